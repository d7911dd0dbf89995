"""MLflow runs as runs from elsewhere: params, step metric histories as curves, final metrics, status.

Reads one experiment of a tracking store (a server, or a database URI like sqlite:///mlflow.db)
through MLflow's own client. A run's identity is its run id; runs are read oldest first, so
numbers follow the order they ran in. Histories are read only for metrics the vocabulary
knows; every other metric is still named in the report.

Must never write to the tracking store (a missing SQLite file is refused, not created), or put
the tracking URI (it may hold a password) in an error message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from gridpoint.errors import ConfigError
from gridpoint.integrations.foreign_run import ForeignRun
from gridpoint.integrations.names import public_metric
from gridpoint.node.store.engine import redact_url
from gridpoint.schema import CurvePoint

__all__ = ["ExperimentRuns", "read_experiment", "run_from_mlflow"]

_STATES = {"FINISHED": "complete"}
_PAGE = 1_000


def _direction(metric: str, direction: str | None) -> str:
    if direction:
        return direction
    return "minimize" if (public_metric(metric) or "").endswith("loss") else "maximize"


def run_from_mlflow(
    client: Any, run: Any, *, experiment: str, metric: str, direction: str
) -> ForeignRun | str:
    """The run of one MLflow run, or why it is left out (not finished, failed, killed)."""
    info, data = run.info, run.data
    status = str(info.status)
    if status in ("RUNNING", "SCHEDULED"):
        return f"{status.lower()}: import again once it has finished"
    if status not in _STATES:
        return f"{status.lower()}: only finished runs are published"
    curve = [
        CurvePoint(int(m.step), key, float(m.value))
        for key in sorted(data.metrics)
        if public_metric(key) is not None
        for m in client.get_metric_history(info.run_id, key)
    ]
    finished = info.end_time or info.start_time
    return ForeignRun(
        source_key=f"mlflow:{info.run_id}",
        study=experiment,
        state=_STATES[status],
        params=dict(data.params),
        curve=tuple(curve),
        metrics={k: float(v) for k, v in data.metrics.items()},
        objective_metric=metric,
        objective_direction=_direction(metric, direction) if metric else "",
        finished_at=datetime.fromtimestamp(finished / 1000, UTC) if finished else None,
        private={
            "run_id": str(info.run_id),
            "run_name": str(info.run_name or ""),
            "status": status,
        },
    )


@dataclass(frozen=True)
class ExperimentRuns:
    """An experiment's runs, oldest first, and how to read each as a run."""

    client: Any
    experiment: str
    listed: tuple[Any, ...]
    metric: str
    direction: str

    def __len__(self) -> int:
        return len(self.listed)

    @property
    def study(self) -> str:
        return self.experiment

    def runs(self) -> Iterator[tuple[str, str, Callable[[], ForeignRun | str]]]:
        """(label, source identity, read the run or say why it is left out) for every run.

        Reading is deferred so that a run already imported costs no history query.
        """
        for run in self.listed:
            yield (
                f"run {run.info.run_id}",
                f"mlflow:{run.info.run_id}",
                partial(
                    run_from_mlflow,
                    self.client,
                    run,
                    experiment=self.experiment,
                    metric=self.metric,
                    direction=self.direction,
                ),
            )


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("MLflow is not installed: pip install 'gridpoint[mlflow]'") from None
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ConfigError(f"no MLflow tracking database at {path}")
    return MlflowClient(tracking_uri=tracking_uri)


def read_experiment(
    tracking_uri: str, experiment: str, metric: str | None, direction: str | None
) -> ExperimentRuns:
    """Lists an experiment's active runs; ConfigError naming what is wrong."""
    if metric and public_metric(metric) is None:
        raise ConfigError(
            f"--metric {metric!r} is not in the metric vocabulary; "
            "use a name like accuracy, f1, eval_loss (or val_acc, eval_accuracy, ...)"
        )
    client = _client(tracking_uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ConfigError(f"no MLflow experiment named {experiment!r} at that tracking URI")
        listed: list[Any] = []
        token = None
        while True:
            page = client.search_runs(
                [found.experiment_id],
                max_results=_PAGE,
                page_token=token,
                order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            )
            listed.extend(page)
            token = page.token
            if not token:
                break
    except ConfigError:
        raise
    except Exception as exc:  # MLflow raises many kinds for a store it cannot read
        shown = redact_url(tracking_uri)
        detail = str(exc).replace(tracking_uri, shown)[:200]
        raise ConfigError(
            f"cannot read the MLflow tracking store {shown}: {type(exc).__name__}: {detail}"
        ) from None
    return ExperimentRuns(client, experiment, tuple(listed), metric or "", direction or "")
