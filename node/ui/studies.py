"""This node's own Optuna studies, read with plain SQL from their storage (studies.db).

Why SQL and not optuna: the UI is part of the node, which never imports the training stack
(an import-linter contract), and reading five of Optuna's tables (studies, study_directions,
trials, trial_values, trial_params: Optuna's RDB schema, stable since 3.0) costs a few queries.
A categorical parameter is stored as the index of its choice; its distribution (JSON in the
same row) names the choices.

Must never write to the storage (SQLite is opened read-only) nor show a study to anyone but
this node's own UI: study names are private.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from gridpoint.node.store.engine import normalize_db_url

__all__ = ["StudyTrial", "StudyView", "list_studies", "optuna_url", "read_study"]


@dataclass(frozen=True)
class StudyTrial:
    """One trial as Optuna kept it."""

    number: int
    state: str
    value: float | None
    params: dict[str, float | str]
    started: datetime | None
    completed: datetime | None


@dataclass(frozen=True)
class StudyView:
    """A study: its name, direction and trials in order."""

    name: str
    maximize: bool
    trials: list[StudyTrial] = field(default_factory=list)

    @property
    def complete(self) -> list[StudyTrial]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]


def optuna_url(studies_url: str) -> str | None:
    """How to read the storage `tune` writes (NodeHome.studies_url): SQLite opened read-only
    (None when no study ran yet), PostgreSQL through the store's driver."""
    if studies_url.startswith("sqlite:///"):
        path = Path(studies_url.removeprefix("sqlite:///"))
        return f"sqlite:///file:{path}?mode=ro&uri=true" if path.exists() else None
    return normalize_db_url(studies_url)


def _engine(url: str) -> Engine:
    return create_engine(url)


def list_studies(url: str | None) -> list[str]:
    """The names of the studies in the storage (none when it has no Optuna tables)."""
    if url is None:
        return []
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT study_name FROM studies ORDER BY 1"))]
    except SQLAlchemyError:
        return []
    finally:
        engine.dispose()


def read_study(url: str | None, name: str) -> StudyView | None:
    """The study named name, or None."""
    if url is None:
        return None
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": name}
            ).first()
            if row is None:
                return None
            study_id = row[0]
            direction = conn.execute(
                text(
                    "SELECT direction FROM study_directions WHERE study_id = :s ORDER BY objective"
                ),
                {"s": study_id},
            ).scalar()
            trials = conn.execute(
                text(
                    "SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete,"
                    " v.value FROM trials t LEFT JOIN trial_values v"
                    " ON v.trial_id = t.trial_id AND v.objective = 0"
                    " WHERE t.study_id = :s ORDER BY t.number"
                ),
                {"s": study_id},
            ).all()
            params: dict[int, dict[str, float | str]] = {}
            for trial_id, pname, pvalue, dist in conn.execute(
                text(
                    "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json"
                    " FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id"
                    " WHERE t.study_id = :s"
                ),
                {"s": study_id},
            ):
                params.setdefault(trial_id, {})[pname] = _param(pvalue, dist)
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return StudyView(
        name=name,
        maximize=str(direction).upper().endswith("MAXIMIZE"),
        trials=[
            StudyTrial(
                number=int(r.number),
                state=str(r.state).split(".")[-1],
                value=None if r.value is None else float(r.value),
                params=params.get(r.trial_id, {}),
                started=_time(r.datetime_start),
                completed=_time(r.datetime_complete),
            )
            for r in trials
        ],
    )


def _param(value: float, distribution_json: str) -> float | str:
    try:
        dist = json.loads(distribution_json)
    except ValueError:
        return float(value)
    if dist.get("name") == "CategoricalDistribution":
        choices = dist.get("attributes", {}).get("choices", [])
        index = int(value)
        return str(choices[index]) if 0 <= index < len(choices) else str(value)
    return float(value)


def _time(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
