"""Optuna trials as runs from elsewhere: read one finished trial, or a whole study from its storage.

Shared by the study callback (`gridpoint.integrations.optuna.Publisher`) and `gridpoint import
optuna`, so a trial published live and the same trial imported later give the same record.
A trial's identity is its study name, number and start time; its curve is its intermediate values under
the objective's metric name; its search space is its own distributions.

Must never: write to the Optuna storage, or put the storage URL (it may hold a password) in an
error message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gridpoint.errors import ConfigError
from gridpoint.integrations.foreign_run import ForeignRun, NotPublished
from gridpoint.integrations.names import public_metric
from gridpoint.node.store.engine import redact_url
from gridpoint.schema import CurvePoint
from gridpoint.trainers.search_space import dimensions_from_distributions

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["StudyTrials", "objective_of", "read_study", "run_from_trial", "source_key"]

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


def objective_of(study: optuna.Study, metric: str | None) -> tuple[str, str]:
    """(metric name, direction) of a single-objective study; the name from metric= or the study."""
    if len(study.directions) != 1:
        raise ConfigError("a multi-objective study cannot be published: records hold one objective")
    name = metric or (study.metric_names[0] if study.metric_names else "")
    if not name:
        raise ConfigError(
            "Optuna does not know what the objective value measures: pass metric= (or --metric), "
            "e.g. 'accuracy', or call study.set_metric_names([...])"
        )
    if public_metric(name) is None:
        raise ConfigError(
            f"the objective metric {name!r} is not in the metric vocabulary; "
            "use a name like accuracy, f1, eval_loss"
        )
    return name, "maximize" if study.direction.name == "MAXIMIZE" else "minimize"


def source_key(study_name: str, trial: FrozenTrial) -> str:
    """A trial's identity: the start time tells apart in-memory studies run again under one name."""
    started = trial.datetime_start.isoformat() if trial.datetime_start else ""
    return f"optuna:{study_name}:{trial.number}:{started}"


def run_from_trial(
    trial: FrozenTrial, *, study_name: str, metric: str, direction: str
) -> ForeignRun | str:
    """The run of one trial, or why it is left out (a trial not finished yet)."""
    state = _STATES.get(trial.state.name)
    if state is None:
        return f"{trial.state.name.lower()}: not finished"
    try:
        space = dimensions_from_distributions(trial.distributions)
    except TypeError as exc:
        return str(exc)
    metrics: dict[str, float] = {}
    unreadable: list[NotPublished] = []
    for name, value in sorted(trial.user_attrs.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = float(value)
        else:
            unreadable.append(NotPublished("metric", name, "a user attribute that is not a number"))
    if trial.value is not None and state == "complete":
        metrics[metric] = float(trial.value)
    return ForeignRun(
        source_key=source_key(study_name, trial),
        study=study_name,
        state=state,
        params=dict(trial.params),
        search_space=space,
        curve=tuple(
            CurvePoint(int(step), metric, float(value))
            for step, value in sorted(trial.intermediate_values.items())
        ),
        metrics=metrics,
        objective_metric=metric,
        objective_direction=direction,
        finished_at=trial.datetime_complete,
        number=trial.number,
        unreadable=tuple(unreadable),
    )


@dataclass(frozen=True)
class StudyTrials:
    """A study's trials read from its storage: the objective, and how many there are."""

    study: optuna.Study
    metric: str
    direction: str

    def __len__(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    @property
    def name(self) -> str:
        return str(self.study.study_name)

    def runs(self) -> Iterator[tuple[str, str, Callable[[], ForeignRun | str]]]:
        """(label, source identity, read the trial or say why it is left out) for every trial."""
        for trial in self.study.get_trials(deepcopy=False):
            yield (
                f"trial {trial.number}",
                source_key(self.name, trial),
                partial(
                    run_from_trial,
                    trial,
                    study_name=self.name,
                    metric=self.metric,
                    direction=self.direction,
                ),
            )


def read_study(storage: str, name: str, metric: str | None) -> StudyTrials:
    """Opens a study in an Optuna storage (read only); ConfigError naming what is wrong."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna creates a missing SQLite file (and its tables) on open: refuse before it can.
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"no SQLite file at {storage.removeprefix('sqlite:///')}")
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise ConfigError(f"no Optuna study named {name!r} in that storage") from None
    except Exception as exc:  # Optuna raises many kinds for a storage it cannot open
        raise ConfigError(
            f"cannot open the Optuna storage {redact_url(storage)}: {type(exc).__name__}"
        ) from None
    metric_name, direction = objective_of(study, metric)
    return StudyTrials(study, metric_name, direction)
