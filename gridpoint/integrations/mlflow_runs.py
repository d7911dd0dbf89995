"""MLflow runs as runs from elsewhere: params, step metric histories as curves, final metrics, status.

Reads one experiment of a tracking store, wherever it is: a file store (`file:///.../mlruns`
or a plain folder, mlflow_files.py), a tracking database (`sqlite:///mlflow.db`,
`postgresql://...`, mlflow_sql.py) or a tracking server (`http(s)://...`, mlflow_server.py).
Each reader gives the same `MlflowRun`, in MLflow's own names; this module turns one into a
`ForeignRun`. A run's identity is its run id; runs are read oldest first, so numbers follow
the order they ran in. Histories are read only for metrics the vocabulary knows; every other
metric is still named in the report. A run a reader cannot read (a damaged file or row, a
time out of range) is skipped with its reason; the others still import. The listing is
bounded (ReadLimits): runs, pages, history points and, against a server, time.

Why our own readers rather than MLflow's client: its stores write into the source when they
open it (a file store adds `.trash`, a database gets MLflow's tables and a default
experiment), MLflow 3 refuses file stores without an opt-in, an old database must be migrated
(written) before it reads, and its REST client pages and retries without bound. MLflow need
not even be installed to import its history.

Must never write to the tracking store, or put the tracking URI (it may hold a password) in an
error message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gridpoint.errors import ConfigError
from gridpoint.integrations.foreign_run import ForeignRun
from gridpoint.integrations.names import public_metric
from gridpoint.schema import CurvePoint

__all__ = [
    "ExperimentRuns",
    "ListedRun",
    "MlflowRun",
    "Progress",
    "ReadLimits",
    "read_experiment",
    "run_from_mlflow",
]

_STATES = {"FINISHED": "complete"}


@dataclass(frozen=True)
class ReadLimits:
    """What one import may cost a reader: runs, pages, points, and time against a server."""

    #: Runs listed at most; an experiment with more is imported in part, and that is said.
    max_runs: int = 100_000
    #: Pages a server may send for one listing (it could always answer "there is more").
    max_pages: int = 1_000
    #: Points of one metric's history read at most.
    max_points: int = 100_000
    #: The whole import against a server, in seconds.
    timeout_s: float = 300.0
    #: One request to a server, in seconds (never beyond what is left of timeout_s).
    request_timeout_s: float = 30.0


#: Told what a reader is doing while it lists ("page 3, 3000 runs").
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MlflowRun:
    """One MLflow run as a reader found it, in MLflow's own names (private until screened)."""

    run_id: str
    name: str
    #: FINISHED, FAILED, KILLED, RUNNING, SCHEDULED (or whatever the store says).
    status: str
    start_ms: int | None
    end_ms: int | None
    params: dict[str, str] = field(default_factory=dict)
    #: The latest value of every metric.
    metrics: dict[str, float] = field(default_factory=dict)
    #: (step, value) of each metric the vocabulary knows, in step order.
    history: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ListedRun:
    """A run found by listing, and how to read it in full (which may raise: skipped, with why)."""

    run_id: str
    read: Callable[[], MlflowRun]


def wanted(metric: str) -> bool:
    """Whether a metric's history is read: only names the vocabulary knows reach a curve."""
    return public_metric(metric) is not None


def _direction(metric: str, direction: str | None) -> str:
    if direction:
        return direction
    return "minimize" if (public_metric(metric) or "").endswith("loss") else "maximize"


def _when(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def run_from_mlflow(
    run: MlflowRun, *, experiment: str, metric: str, direction: str
) -> ForeignRun | str:
    """The run of one MLflow run, or why it is left out (not finished, failed, killed)."""
    status = run.status
    if status in ("RUNNING", "SCHEDULED"):
        return f"{status.lower()}: import again once it has finished"
    if status not in _STATES:
        return f"{status.lower()}: only finished runs are published"
    try:
        finished = _when(run.end_ms or run.start_ms)
    except (OverflowError, ValueError, OSError):
        return "unreadable: its end time is out of range"
    curve = [
        CurvePoint(step, key, value)
        for key, points in sorted(run.history.items())
        for step, value in points
    ]
    return ForeignRun(
        source_key=f"mlflow:{run.run_id}",
        study=experiment,
        state=_STATES[status],
        params=dict(run.params),
        curve=tuple(curve),
        metrics=dict(run.metrics),
        objective_metric=metric,
        objective_direction=_direction(metric, direction) if metric else "",
        finished_at=finished,
        private={"run_id": run.run_id, "run_name": run.name, "status": status},
    )


def _read(listed: ListedRun, *, experiment: str, metric: str, direction: str) -> ForeignRun | str:
    return run_from_mlflow(listed.read(), experiment=experiment, metric=metric, direction=direction)


def _nothing() -> None:
    """Closing a source that holds nothing open."""


@dataclass
class ExperimentRuns:
    """An experiment's runs, oldest first, and how to read each as a run."""

    experiment: str
    listed: list[ListedRun]
    metric: str
    direction: str
    #: What the listing stopped short of ("the first 100000 runs of ...").
    notes: list[str] = field(default_factory=list)
    close: Callable[[], None] = _nothing

    def __len__(self) -> int:
        return len(self.listed)

    @property
    def study(self) -> str:
        return self.experiment

    def runs(self) -> Iterator[tuple[str, str, Callable[[], ForeignRun | str]]]:
        """(label, source identity, read the run or say why it is left out) for every run.

        Reading is deferred so that a run already imported costs no further reads; reading
        a damaged run raises (the caller skips it, saying why).
        """
        for listed in self.listed:
            yield (
                f"run {listed.run_id}",
                f"mlflow:{listed.run_id}",
                partial(
                    _read,
                    listed,
                    experiment=self.experiment,
                    metric=self.metric,
                    direction=self.direction,
                ),
            )


def _file_store_root(uri: str) -> Path | None:
    """The folder of a file store URI (file:///...) or plain path; None for other URIs."""
    if uri.startswith("file:"):
        return Path(unquote(urlsplit(uri).path)).expanduser()
    if "://" not in uri and not uri.startswith(("sqlite:", "postgresql:", "postgres:")):
        return Path(uri).expanduser()
    return None


def read_experiment(
    tracking_uri: str,
    experiment: str,
    metric: str | None,
    direction: str | None,
    *,
    limits: ReadLimits | None = None,
    progress: Progress = lambda _text: None,
) -> ExperimentRuns:
    """Lists an experiment's active runs, oldest first; ConfigError naming what is wrong."""
    limits = limits or ReadLimits()
    if metric and public_metric(metric) is None:
        raise ConfigError(
            f"--metric {metric!r} is not in the metric vocabulary; "
            "use a name like accuracy, f1, eval_loss (or val_acc, eval_accuracy, ...)"
        )
    close = _nothing
    root = _file_store_root(tracking_uri)
    if root is not None:
        from gridpoint.integrations import mlflow_files

        listed, notes = mlflow_files.list_runs(root, experiment, wanted, limits)
    elif tracking_uri.startswith(("http://", "https://")):
        from gridpoint.integrations import mlflow_server

        server = mlflow_server.TrackingServer(tracking_uri, limits, progress)
        listed, notes = server.list_runs(experiment, wanted)
    else:
        from gridpoint.integrations import mlflow_sql

        database = mlflow_sql.TrackingDatabase(tracking_uri, limits)
        close = database.close
        try:
            listed, notes = database.list_runs(experiment, wanted)
        except BaseException:
            close()
            raise
    return ExperimentRuns(experiment, listed, metric or "", direction or "", notes, close)
