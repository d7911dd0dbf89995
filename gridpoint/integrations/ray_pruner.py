"""PrunerScheduler: any Optuna pruner (gridpoint's CurvePruner included) as a Ray Tune scheduler.

Ray Tune's OptunaSearch runs its Optuna study with a NopPruner and takes no pruner; stopping
trials early is the job of Ray's schedulers. This scheduler keeps an Optuna study of its own
(in memory, same direction) that mirrors what the trials report at each evaluation step, asks
the pruner after every report, and stops the trial when it says so. A finished trial is told
to the mirror study as complete (or pruned), so pruners that compare with the study's own
trials (the median, the curve pruner's reference) see them, as under `gridpoint tune`.

Must never stop a trial for any reason but the pruner's verdict, or read the trial's
parameters: only the reported step and objective.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

# The keys of a reported result this scheduler reads (ray_trial.py reports them).
from gridpoint.integrations.ray_trial import DONE, OBJECTIVE, STEP

__all__ = ["DONE", "OBJECTIVE", "STEP", "PrunerScheduler"]


class PrunerScheduler(FIFOScheduler):
    """Stops a Ray Tune trial when an Optuna pruner would prune it."""

    def __init__(self, pruner: optuna.pruners.BasePruner, direction: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = optuna.create_study(
            direction="maximize" if direction == "maximize" else "minimize", pruner=pruner
        )
        self._trials: dict[str, optuna.trial.Trial] = {}
        self._steps: dict[str, set[int]] = {}
        self._last: dict[str, float] = {}

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        value, step = result.get(OBJECTIVE), result.get(STEP)
        if value is None or step is None:
            return str(TrialScheduler.CONTINUE)
        if trial.trial_id not in self._trials:
            self._trials[trial.trial_id] = self._study.ask()
        mirror = self._trials[trial.trial_id]
        self._last[trial.trial_id] = float(value)
        seen = self._steps.setdefault(trial.trial_id, set())
        if int(step) in seen:  # a trial's final report repeats its last evaluation's step
            return str(TrialScheduler.CONTINUE)
        seen.add(int(step))
        mirror.report(float(value), int(step))
        if mirror.should_prune():
            logging.getLogger("gridpoint.integrations").info(
                "pruning trial %s at step %s", trial.trial_id, step
            )
            return str(TrialScheduler.STOP)
        return str(TrialScheduler.CONTINUE)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._finish(trial.trial_id, finished=bool(result.get(DONE)))

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._finish(trial.trial_id, finished=False)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._finish(trial.trial_id, finished=False)

    def _finish(self, trial_id: str, *, finished: bool) -> None:
        mirror = self._trials.pop(trial_id, None)
        value = self._last.pop(trial_id, None)
        self._steps.pop(trial_id, None)
        if mirror is None:
            return
        if finished and value is not None:
            self._study.tell(mirror, value)
        else:
            self._study.tell(mirror, state=optuna.trial.TrialState.PRUNED)
