"""Optuna trials as runs from elsewhere: read one finished trial, or a whole study from its storage.

Shared by the study callback (`gridpoint.integrations.optuna.Publisher`) and `gridpoint import
optuna`, so a trial published live and the same trial imported later give the same record.
A trial's identity is its study name, number and start time; its curve is its intermediate values under
the objective's metric name; its search space is its own distributions.

The storage is opened read-only (readonly.py): a file that is not an Optuna storage is refused
before Optuna could create its tables in it. A damaged trial (a corrupt row, a value nested
thousands deep, an unknown state) is skipped with its reason; the others still import.

Must never: write to the Optuna storage, or put the storage URL (it may hold a password) in an
error message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

from gridpoint.errors import ConfigError, in_words
from gridpoint.integrations.foreign_run import ForeignRun, NotPublished, unreadable
from gridpoint.integrations.names import public_metric
from gridpoint.integrations.readonly import read_only
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
    not_numbers: list[NotPublished] = []
    for name, value in sorted(trial.user_attrs.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = float(value)
        else:
            not_numbers.append(
                NotPublished("metric", name, "a user attribute that is not a number")
            )
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
        unreadable=tuple(not_numbers),
    )


#: A trial read, or (its number, why it cannot be read).
_Trial: TypeAlias = "FrozenTrial | tuple[int, str]"
#: The tables an Optuna RDB storage has; a database without them belongs to something else.
_OPTUNA_TABLES = {"studies", "trials", "version_info", "alembic_version"}


@dataclass(frozen=True)
class StudyTrials:
    """A study's trials read from its storage: the objective, and each trial or why it is unreadable.

    The trials are read in one query; when that fails (a corrupt row), each is read alone, so
    one bad trial is skipped with its reason and the others still import.
    """

    study: optuna.Study
    metric: str
    direction: str
    trials: tuple[_Trial, ...]
    #: The read-only RDB storage the study was loaded from.
    storage: Any

    def __len__(self) -> int:
        return len(self.trials)

    @property
    def name(self) -> str:
        return str(self.study.study_name)

    def close(self) -> None:
        self.storage.engine.dispose()

    def runs(self) -> Iterator[tuple[str, str, Callable[[], ForeignRun | str]]]:
        """(label, source identity, read the trial or say why it is left out) for every trial."""
        for trial in self.trials:
            if isinstance(trial, tuple):
                number, reason = trial
                yield (f"trial {number}", "", partial(str, reason))
                continue
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


def _trials(storage: Any, study: optuna.Study) -> tuple[_Trial, ...]:
    """The study's trials; each read alone when reading them together fails."""
    from sqlalchemy import text

    try:
        return tuple(study.get_trials(deepcopy=False))
    except Exception:  # a corrupt row somewhere: read the trials one by one below
        pass
    with storage.engine.connect() as db:
        ids = db.execute(
            text("SELECT trial_id, number FROM trials WHERE study_id = :s ORDER BY trial_id"),
            {"s": study._study_id},
        ).all()
    out: list[_Trial] = []
    for trial_id, number in ids:
        try:
            out.append(storage.get_trial(int(trial_id)))
        except Exception as exc:
            out.append((number if isinstance(number, int) else -1, unreadable(exc)))
    return tuple(out)


def _open(storage_url: str) -> Any:
    """Optuna's RDB storage over a read-only connection; ConfigError naming what is wrong."""
    import optuna
    from sqlalchemy import inspect

    database = read_only(storage_url, "an Optuna storage")
    engine = database.engine()
    try:
        tables = set(inspect(engine).get_table_names())
    except Exception as exc:
        raise ConfigError(
            f"cannot open the Optuna storage {redact_url(storage_url)}: {in_words(exc)}"
        ) from None
    finally:
        engine.dispose()
    missing = _OPTUNA_TABLES - tables
    if missing == {"alembic_version"}:
        raise ConfigError(
            "this Optuna storage predates Optuna's schema versions: upgrade a copy of it with "
            "`optuna storage upgrade --storage URL` and import from the copy"
        )
    if missing:
        raise ConfigError(
            f"{redact_url(storage_url)} is not an Optuna storage (it has no {sorted(missing)[0]!r} "
            "table): another application's database?"
        )
    try:
        return optuna.storages.RDBStorage(
            database.url, engine_kwargs=database.engine_kwargs, skip_table_creation=True
        )
    except RuntimeError as exc:
        if "storage upgrade" in str(exc):
            raise ConfigError(
                "this Optuna storage was written by another Optuna version: upgrade a copy of it "
                "with `optuna storage upgrade --storage URL` and import from the copy"
            ) from None
        raise ConfigError(
            f"cannot open the Optuna storage {redact_url(storage_url)}: {in_words(exc)}"
        ) from None
    except Exception as exc:  # Optuna raises many kinds for a storage it cannot open
        raise ConfigError(
            f"cannot open the Optuna storage {redact_url(storage_url)}: {in_words(exc)}"
        ) from None


def read_study(storage: str, name: str, metric: str | None) -> StudyTrials:
    """Opens a study in an Optuna storage, read-only; ConfigError naming what is wrong."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = _open(storage)
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
        metric_name, direction = objective_of(study, metric)
        trials = _trials(rdb, study)
    except KeyError:
        raise ConfigError(f"no Optuna study named {name!r} in that storage") from None
    except ConfigError:
        raise
    except Exception as exc:  # a damaged study row (direction, metric names)
        raise ConfigError(f"cannot read the Optuna study {name!r}: {in_words(exc)}") from None
    return StudyTrials(study, metric_name, direction, trials, rdb)
