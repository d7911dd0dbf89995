"""Where a node's Optuna studies are stored: an RDB storage with heartbeats.

On SQLite, a file of its own. On PostgreSQL the studies share the node's database but live in
their own schema (`optuna`): Optuna and the node's store both keep an `alembic_version`
table, and in one schema each would read the other's revision and refuse to start.
Anything that reads the studies (optuna-dashboard, the UI) opens them through
`study_storage` or with `?options=-csearch_path%3Doptuna` on the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["GRACE_SECONDS", "HEARTBEAT_SECONDS", "SCHEMA", "study_storage"]

SCHEMA = "optuna"
#: How often a live trial beats, and how long a silent one stays RUNNING before the next run
#: or worker fails it (its process is gone: a live trial beats HEARTBEAT_SECONDS apart).
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgres"):
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        try:
            with engine.begin() as db:
                db.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        finally:
            engine.dispose()
        return {"connect_args": {"options": f"-csearch_path={SCHEMA}"}}
    return {}


def study_storage(url: str, on_stale: Callable[[int], None] | None = None) -> Any:
    """The Optuna RDB storage of url, with heartbeats; on_stale(number) for each trial it fails."""
    import optuna

    def failed(_study: Any, trial: Any) -> None:
        if on_stale is not None:
            on_stale(int(trial.number))

    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=_engine_kwargs(url),
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=failed,
    )
