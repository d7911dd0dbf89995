"""An MLflow tracking database (SQLite or PostgreSQL) read with plain SQL over a read-only connection.

Reads the tables every MLflow schema since 1.x has (`experiments`, `runs`, `params`,
`metrics`, and `latest_metrics` where it exists), so a database an older MLflow wrote is read
as it is, never migrated. Values are converted here, one run at a time: a row that does not
parse (text where a number belongs, an unknown status) makes only its run unreadable.

Must never: write to the database (readonly.py opens it), or put its URL in a message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

from gridpoint.errors import ConfigError
from gridpoint.integrations.mlflow_runs import ListedRun, MlflowRun, ReadLimits
from gridpoint.integrations.readonly import read_only
from gridpoint.node.store.engine import redact_url

__all__ = ["TrackingDatabase"]

_TABLES = {"experiments", "runs", "params", "metrics"}


def _number(value: object, is_nan: object = False) -> float:
    if is_nan:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a metric value that is not a number")
    return float(value)


def _ms(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a time that is not a number")
    return int(value)


class TrackingDatabase:
    """One tracking database, open read-only until close()."""

    def __init__(self, url: str, limits: ReadLimits) -> None:
        from sqlalchemy import inspect

        self._shown = redact_url(url)
        self._limits = limits
        self._engine = read_only(url, "an MLflow tracking database").engine()
        try:
            tables = set(inspect(self._engine).get_table_names())
        except Exception as exc:
            self._engine.dispose()
            raise ConfigError(
                f"cannot open the MLflow tracking database {self._shown}: {type(exc).__name__}"
            ) from None
        missing = _TABLES - tables
        if missing:
            self._engine.dispose()
            raise ConfigError(
                f"{self._shown} is not an MLflow tracking database (it has no "
                f"{sorted(missing)[0]!r} table): another application's database?"
            )
        self._latest = "latest_metrics" in tables

    def close(self) -> None:
        self._engine.dispose()

    def _rows(self, sql: str, **values: object) -> list[Any]:
        from sqlalchemy import text

        with self._engine.connect() as db:
            return list(db.execute(text(sql), values).all())

    def list_runs(
        self, experiment: str, wanted: Callable[[str], bool]
    ) -> tuple[list[ListedRun], list[str]]:
        """The experiment's active runs, oldest first (at most max_runs); notes on what was cut."""
        try:
            found = self._rows(
                "SELECT experiment_id FROM experiments WHERE name = :name "
                "AND lifecycle_stage = 'active'",
                name=experiment,
            )
            if not found:
                raise ConfigError(f"no MLflow experiment named {experiment!r} at that tracking URI")
            rows = self._rows(
                "SELECT run_uuid FROM runs WHERE experiment_id = :e AND lifecycle_stage = 'active' "
                "ORDER BY start_time, run_uuid LIMIT :n",
                e=found[0][0],
                n=self._limits.max_runs + 1,
            )
        except ConfigError:
            raise
        except Exception as exc:  # a database that is not the shape MLflow writes
            raise ConfigError(
                f"cannot read the MLflow tracking database {self._shown}: {type(exc).__name__}"
            ) from None
        notes = []
        if len(rows) > self._limits.max_runs:
            notes.append(f"listed the first {self._limits.max_runs} runs only")
        listed = [
            ListedRun(str(run_id), partial(self._read, run_id, wanted))
            for (run_id,) in rows[: self._limits.max_runs]
        ]
        return listed, notes

    def _read(self, run_id: object, wanted: Callable[[str], bool]) -> MlflowRun:
        [(name, status, start, end)] = self._rows(
            "SELECT name, status, start_time, end_time FROM runs WHERE run_uuid = :r", r=run_id
        )
        params = {
            str(k): str(v)
            for k, v in self._rows("SELECT key, value FROM params WHERE run_uuid = :r", r=run_id)
        }
        metrics: dict[str, float] = {}
        if self._latest:
            for key, value, is_nan in self._rows(
                "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = :r", r=run_id
            ):
                metrics[str(key)] = _number(value, is_nan)
        history: dict[str, tuple[tuple[int, float], ...]] = {}
        for (key,) in self._rows("SELECT DISTINCT key FROM metrics WHERE run_uuid = :r", r=run_id):
            if not self._latest or wanted(str(key)):
                points = self._rows(
                    "SELECT step, timestamp, value, is_nan FROM metrics "
                    "WHERE run_uuid = :r AND key = :k ORDER BY step, timestamp LIMIT :n",
                    r=run_id,
                    k=key,
                    n=self._limits.max_points,
                )
                read = [(int(s), _number(v, nan)) for s, _, v, nan in points]
                if not self._latest and read:
                    metrics[str(key)] = read[-1][1]
                if wanted(str(key)):
                    history[str(key)] = tuple(read)
        return MlflowRun(
            run_id=str(run_id),
            name=str(name or ""),
            status=str(status),
            start_ms=_ms(start),
            end_ms=_ms(end),
            params=params,
            metrics=metrics,
            history=history,
        )
