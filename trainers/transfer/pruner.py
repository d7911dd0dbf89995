"""CurvePruner: stops a trial whose learning curve falls clearly below its peers' at that step.

The reference at step s is every prior study's objective curve that reaches s (linearly
interpolated between its evaluations) together with this study's own finished trials; a
trial whose value is worse than the reference's `quantile` (the lower quartile by default,
for a maximized objective) at each of its last `patience` reported steps (two by default) is
stopped: one point of a steep curve says little, and the first trial of a warm start, the
priors' best configuration, must not be lost on one. Prior curves let a study prune from its
very first trial, where Optuna's own pruners must wait for n_startup_trials of its own.
Works with any sampler. `fallback` (the study's own pruner) is consulted too: either can
stop a trial.

Priors' curves are only as comparable as their tasks: feed it curves of similar tasks (the
node picks them by task descriptor), never of arbitrary ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["CurvePruner", "value_at"]

Curve = Sequence[tuple[int, float]]


def value_at(curve: Curve, step: int) -> float | None:
    """The curve's value at `step`, interpolated; None outside the steps it covers."""
    if not curve or step < curve[0][0] or step > curve[-1][0]:
        return None
    steps = np.array([s for s, _ in curve], dtype=float)
    values = np.array([v for _, v in curve], dtype=float)
    return float(np.interp(step, steps, values))


class CurvePruner(BasePruner):
    def __init__(
        self,
        prior_curves: Sequence[Curve],
        *,
        quantile: float = 0.25,
        min_reference: int = 3,
        n_warmup_steps: int = 0,
        patience: int = 2,
        fallback: BasePruner | None = None,
    ) -> None:
        if not 0.0 < quantile < 1.0:
            raise ValueError("quantile must be between 0 and 1")
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self._patience = patience
        self._priors = [sorted(c) for c in prior_curves if c]
        self._quantile = quantile
        self._min_reference = min_reference
        self._warmup = n_warmup_steps
        self._fallback = fallback or optuna.pruners.NopPruner()

    def reference(self, study: Study, step: int) -> list[float]:
        """Values other curves had at `step`: priors' and this study's finished trials'."""
        values = [v for c in self._priors if (v := value_at(c, step)) is not None]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            own = sorted(t.intermediate_values.items())
            if (v := value_at(own, step)) is not None:
                values.append(v)
        return values

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self._warmup:
            return False
        recent = [s for s in sorted(trial.intermediate_values) if s >= self._warmup]
        recent = recent[-self._patience :]
        if len(recent) == self._patience and all(
            self._below(study, s, trial.intermediate_values[s]) for s in recent
        ):
            return True
        return self._fallback.prune(study, trial)

    def _below(self, study: Study, step: int, value: float) -> bool:
        """Whether `value` at `step` is worse than the reference's quantile there."""
        reference = self.reference(study, step)
        if len(reference) < self._min_reference or not np.isfinite(value):
            return False
        if study.direction == StudyDirection.MAXIMIZE:
            return value < float(np.quantile(reference, self._quantile))
        return value > float(np.quantile(reference, 1.0 - self._quantile))
