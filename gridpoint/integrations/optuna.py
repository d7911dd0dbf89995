"""`Publisher`: an Optuna study callback that publishes each finished trial into a node home.

    study.optimize(objective, callbacks=[Publisher(home="~/gridpoint", task="text-classification",
                                                   metric="accuracy")])

Each finished trial (complete or pruned) becomes one anonymized, signed record: its parameters,
its search space from the distributions, its intermediate values as the curve, its value and
state; the full trial is kept privately. A trial published here and the same trial imported
later with `gridpoint import optuna` are the same record, published once.

Must never: stop the study for a trial it cannot publish (it logs a warning and goes on; only
a callback that cannot work at all, e.g. no metric name, stops it), or publish a failed trial.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from gridpoint.errors import GridpointError
from gridpoint.integrations.foreign_run import ModelRef
from gridpoint.integrations.optuna_trials import objective_of, run_from_trial
from gridpoint.integrations.sink import HomeSink, Outcome, open_home
from gridpoint.integrations.task import declared_task
from gridpoint.node.home import NodeHome
from gridpoint.schema import TaskDescriptor

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["Publisher"]

_log = logging.getLogger("gridpoint.integrations")


class Publisher:
    """Optuna callback: publishes every finished trial of the study it is given to."""

    def __init__(
        self,
        home: str | Path | NodeHome | None = None,
        task: str | TaskDescriptor = "text-classification",
        *,
        train_size: int = 0,
        metric: str | None = None,
        language: str = "",
        num_labels: int = 0,
        public_model_id: str = "",
        model_family: str = "",
        study: str | None = None,
    ) -> None:
        """home: a node home (default $GRIDPOINT_HOME); task: a task type or a descriptor.

        With a task type, train_size (examples; only its bucket is published), language and
        num_labels describe the data the objective trains on. metric names what the objective value measures (default: the study's metric names);
        study renames the study privately (default: the Optuna study's name).
        """
        self._home = open_home(home)
        self._task = (
            task
            if isinstance(task, TaskDescriptor)
            else declared_task(
                task, train_size=train_size, language=language, num_labels=num_labels
            )
        )
        self._model = ModelRef(public_id=public_model_id, family=model_family)
        self._metric = metric
        self._study = study
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        #: Every trial's outcome, by trial number (what was published, what was left out).
        self.outcomes: dict[int, Outcome] = {}

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Called by Optuna after each trial; publishes it if it finished."""
        metric, direction = objective_of(study, self._metric)
        run = run_from_trial(
            trial, study_name=self._study or study.study_name, metric=metric, direction=direction
        )
        if isinstance(run, str):
            return
        try:
            with self._lock, HomeSink(self._home) as sink:
                outcome = sink.add(run, self._task, self._model)
        except GridpointError as exc:
            # A study that runs for hours must not stop because one record could not be made.
            _log.warning("gridpoint: trial %d not published: %s", trial.number, exc)
            return
        self.outcomes[trial.number] = outcome
        new = sorted({n.name for n in outcome.left_out} - self._reported)
        if new:
            self._reported.update(new)
            _log.warning(
                "gridpoint: kept private (outside the published vocabulary): %s", ", ".join(new)
            )
