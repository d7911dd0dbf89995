"""This node's own Optuna studies, read with plain SQL from their storage (studies.db).

Why SQL and not optuna: the UI is part of the node, which never imports the training stack
(an import-linter contract), and reading six of Optuna's tables (studies, study_directions,
trials, trial_values, trial_params, trial_intermediate_values: Optuna's RDB schema, stable
since 3.0) costs a few queries. A categorical parameter is stored as the index of its choice;
its distribution (JSON in the same row) names the choices.

A row that does not read (a distribution that is not a JSON object, a choice index that is
NaN or out of range, a NaN value) never fails the page: the trial is kept, without that
parameter, and says what was wrong (StudyTrial.problem).

Must never write to the storage (SQLite is opened read-only) nor show a study to anyone but
this node's own UI: study names are private.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from gridpoint.node.store.engine import normalize_db_url

__all__ = [
    "ParamSpace",
    "StudyTrial",
    "StudyView",
    "list_studies",
    "optuna_url",
    "read_study",
]

#: Most trials read for one study (its newest); a page of charts stays bounded.
MAX_TRIALS = 10_000
#: Most intermediate values (learning-curve points) read for one study.
MAX_CURVE_POINTS = 200_000

ParamValue = float | str


@dataclass(frozen=True)
class ParamSpace:
    """A parameter's search space as its distribution says: kind, log scale, choices, and
    the distribution as Optuna wrote it (JSON)."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    log: bool = False
    choices: tuple[str, ...] = ()
    distribution: str = ""


@dataclass(frozen=True)
class StudyTrial:
    """One trial as Optuna kept it: parameters as shown (a choice by its label) and as stored
    (internal: a choice by its index); problem says what in its rows did not read."""

    number: int
    state: str
    value: float | None
    params: dict[str, ParamValue]
    started: datetime | None
    completed: datetime | None
    curve: list[tuple[int, float]] = field(default_factory=list)
    problem: str = ""
    internal: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyView:
    """A study: its name, direction, parameters' spaces and trials in order."""

    name: str
    maximize: bool
    trials: list[StudyTrial] = field(default_factory=list)
    spaces: dict[str, ParamSpace] = field(default_factory=dict)

    @property
    def complete(self) -> list[StudyTrial]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]

    def trial(self, number: int) -> StudyTrial | None:
        return next((t for t in self.trials if t.number == number), None)


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
    """The study named name, or None (no such study, or a storage that does not read)."""
    if url is None:
        return None
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return _read(conn, name)
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _read(conn: Connection, name: str) -> StudyView | None:
    row = conn.execute(
        text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": name}
    ).first()
    if row is None:
        return None
    study = {"s": row[0], "limit": MAX_TRIALS}
    direction = conn.execute(
        text("SELECT direction FROM study_directions WHERE study_id = :s ORDER BY objective"),
        study,
    ).scalar()
    # The newest MAX_TRIALS trials; their rows below are read by the same bound.
    newest = "SELECT trial_id FROM trials WHERE study_id = :s ORDER BY number DESC LIMIT :limit"
    trials = conn.execute(
        text(
            "SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete,"
            " v.value FROM trials t LEFT JOIN trial_values v"
            " ON v.trial_id = t.trial_id AND v.objective = 0"
            f" WHERE t.trial_id IN ({newest}) ORDER BY t.number"
        ),
        study,
    ).all()
    params: dict[int, dict[str, ParamValue]] = {}
    internal: dict[int, dict[str, float]] = {}
    problems: dict[int, list[str]] = {}
    spaces: dict[str, ParamSpace] = {}
    # Every trial repeats its parameters' distributions: each text is read once.
    distributions: dict[Any, Any] = {}
    for trial_id, pname, pvalue, dist in conn.execute(
        text(
            "SELECT trial_id, param_name, param_value, distribution_json FROM trial_params"
            f" WHERE trial_id IN ({newest}) ORDER BY param_id"
        ),
        study,
    ):
        if dist not in distributions:
            distributions[dist] = _distribution(dist)
        space, value, problem = _param(str(pname), pvalue, distributions[dist], str(dist))
        if problem:
            problems.setdefault(trial_id, []).append(problem)
            continue
        assert space is not None and value is not None
        spaces.setdefault(space.name, space)
        params.setdefault(trial_id, {})[space.name] = value
        internal.setdefault(trial_id, {})[space.name] = float(pvalue)
    curves: dict[int, list[tuple[int, float]]] = {}
    for trial_id, step, value in conn.execute(
        text(
            "SELECT trial_id, step, intermediate_value FROM trial_intermediate_values"
            f" WHERE trial_id IN ({newest}) ORDER BY trial_id, step LIMIT {MAX_CURVE_POINTS}"
        ),
        study,
    ):
        if isinstance(value, int | float) and math.isfinite(value):
            curves.setdefault(trial_id, []).append((int(step), float(value)))
    out = []
    for r in trials:
        value = None if r.value is None else float(r.value)
        trial_problems = problems.get(r.trial_id, [])
        if value is not None and not math.isfinite(value):
            trial_problems = [*trial_problems, f"its value is {value}"]
            value = None
        out.append(
            StudyTrial(
                number=int(r.number),
                state=str(r.state).split(".")[-1],
                value=value,
                params=params.get(r.trial_id, {}),
                started=_time(r.datetime_start),
                completed=_time(r.datetime_complete),
                curve=curves.get(r.trial_id, []),
                problem="; ".join(trial_problems),
                internal=internal.get(r.trial_id, {}),
            )
        )
    return StudyView(
        name=name,
        maximize=str(direction).upper().endswith("MAXIMIZE"),
        trials=out,
        spaces=dict(sorted(spaces.items())),
    )


def _distribution(text: Any) -> dict[str, Any] | None:
    """A distribution's JSON as an object (None when it is not one)."""
    try:
        dist = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(dist, dict) or not isinstance(dist.get("attributes", {}), dict):
        return None
    return dist


def _param(
    name: str, value: Any, dist: dict[str, Any] | None, text: str
) -> tuple[ParamSpace | None, ParamValue | None, str]:
    """The parameter's space and external value, or what is wrong with its row (dist: its
    distribution read from text)."""
    if dist is None:
        return None, None, f"parameter {name}: its distribution is not a JSON object"
    attributes = dist.get("attributes", {})
    number = isinstance(value, int | float) and math.isfinite(value)
    kind = str(dist.get("name", ""))
    if kind == "CategoricalDistribution":
        choices = attributes.get("choices")
        if not (number and isinstance(choices, list) and 0 <= value < len(choices)) or value % 1:
            return None, None, f"parameter {name}: {value!r} is not the index of a choice"
        labels = tuple(str(c) for c in choices)
        space = ParamSpace(name, "categorical", choices=labels, distribution=text)
        return space, labels[int(value)], ""
    if not number:
        return None, None, f"parameter {name}: its value {value!r} is not a number"
    log = bool(attributes.get("log")) or "Log" in kind
    kind = "int" if kind.startswith("Int") else "float"
    return ParamSpace(name, kind, log=log, distribution=text), float(value), ""


def _time(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
