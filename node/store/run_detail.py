"""A run's private detail as the store keeps it: one JSON document per run, in one shape.

detail_text() writes a RunDetail; detail_from_text() reads it back, and also reads the two
shapes written before there was one (a `tune` trial's and an imported run's), so every
home's private runs stay readable. Reading never fails: a field that is missing or of
another type takes its default, and a document that is not JSON reads as an empty detail.

Must never be used for anything that leaves the node: the detail holds paths, names, errors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from gridpoint.node.store.base import ModelRef, NotPublished, RunDetail
from gridpoint.schema import (
    CurvePoint,
    ParamValue,
    PrivacyGuarantee,
    SearchDimension,
    TaskDescriptor,
)

__all__ = ["detail_from_text", "detail_text"]

_TEXT_FIELDS = (
    "kind", "state", "objective_metric", "objective_direction", "error", "failure", "source",
    "study_file", "pipeline", "device", "precision",
)  # fmt: skip
# Keys the older shapes wrote that are neither fields nor the source's own: the study and
# trial are the row's columns.
_COLUMNS = ("study", "trial")


def detail_text(detail: RunDetail) -> str:
    """The detail as the JSON document the store keeps."""
    data: dict[str, Any] = {name: getattr(detail, name) for name in _TEXT_FIELDS}
    data |= {
        "params": detail.params,
        "search_space": [{**asdict(d), "choices": list(d.choices)} for d in detail.search_space],
        "curve": [list(p) for p in detail.curve],
        "metrics": detail.metrics,
        "objective": [detail.objective_metric, detail.objective_direction],
        "task": asdict(detail.task),
        "model": asdict(detail.model),
        "samples_per_second": detail.samples_per_second,
        "trainable_parameters": detail.trainable_parameters,
        "members": list(detail.members),
        "finished_at": detail.finished_at.isoformat() if detail.finished_at else None,
        "not_published": [asdict(n) for n in detail.not_published],
        "extra": detail.extra,
        "privacy": asdict(detail.privacy) if detail.privacy is not None else None,
        "resumed_after_round": detail.resumed_after_round,
    }
    del data["objective_metric"], data["objective_direction"]
    return json.dumps(data, default=str)


def detail_from_text(text: str) -> RunDetail:
    """The detail a stored document holds (any shape ever written); defaults where unreadable."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return RunDetail(state="")
    objective = _list(data.get("objective"))
    metric, direction = objective if len(objective) == 2 else ("", "")
    known = {f.name for f in fields(RunDetail)} | {"objective", *_COLUMNS}
    extra = {k: str(v) for k, v in _dict(data.get("extra")).items()}
    # The older imported-run shape kept the source's own fields at the top level.
    extra |= {k: _plain(v) for k, v in data.items() if k not in known}
    return RunDetail(
        **{name: _str(data.get(name)) for name in _TEXT_FIELDS if name in data},
        objective_metric=_str(metric),
        objective_direction=_str(direction),
        params={str(k): v for k, v in _dict(data.get("params")).items() if _is_param(v)},
        search_space=tuple(_dimensions(data.get("search_space"))),
        curve=tuple(_curve(data.get("curve"))),
        metrics={str(k): float(v) for k, v in _dict(data.get("metrics")).items() if _is_num(v)},
        task=_task(data.get("task")),
        model=_model(data.get("model")),
        samples_per_second=_num_or_none(data.get("samples_per_second")),
        trainable_parameters=_int_or_none(data.get("trainable_parameters")),
        members=tuple(str(m) for m in _list(data.get("members"))),
        finished_at=_time(data.get("finished_at")),
        not_published=tuple(_not_published(data.get("not_published"))),
        extra=extra,
        privacy=_privacy(data.get("privacy")),
        resumed_after_round=_int_or_none(data.get("resumed_after_round")) or 0,
    )


def _privacy(value: object) -> PrivacyGuarantee | None:
    table = _dict(value)
    try:
        return PrivacyGuarantee(
            epsilon=float(table["epsilon"]),
            delta=float(table["delta"]),
            protected=str(table["protected"]),
            accountant=str(table["accountant"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_param(value: object) -> bool:
    return isinstance(value, int | float | str | bool)


def _num_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _curve(value: object) -> list[CurvePoint]:
    points = []
    for item in _list(value):
        if _is_point(item):
            points.append(CurvePoint(int(item[0]), item[1], float(item[2])))
    return points


def _is_point(item: object) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 3
        and isinstance(item[0], int)
        and isinstance(item[1], str)
        and _is_num(item[2])
    )


def _dimensions(value: object) -> list[SearchDimension]:
    dims = []
    for item in _list(value):
        data = _dict(item)
        choices: list[ParamValue] = [c for c in _list(data.get("choices")) if _is_param(c)]
        try:
            dims.append(
                SearchDimension(
                    name=str(data["name"]),
                    kind=str(data["kind"]),
                    low=float(data.get("low", 0.0)),
                    high=float(data.get("high", 0.0)),
                    log=bool(data.get("log", False)),
                    step=float(data.get("step", 0.0)),
                    choices=tuple(choices),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return dims


def _task(value: object) -> TaskDescriptor:
    data = _dict(value)
    return TaskDescriptor(
        type=_str(data.get("type")),
        num_labels=_int_or_none(data.get("num_labels")) or 0,
        **{f.name: _str(data.get(f.name)) for f in fields(TaskDescriptor)[2:]},
    )


def _model(value: object) -> ModelRef:
    data = _dict(value)
    return ModelRef(
        public_id=_str(data.get("public_id")),
        family=_str(data.get("family")),
        num_parameters=_int_or_none(data.get("num_parameters")) or 0,
        lora=data.get("lora") is True,
        # Details written before head-only training was recorded trained every weight.
        head_only=data.get("head_only") is True,
    )


def _time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _not_published(value: object) -> list[NotPublished]:
    return [
        NotPublished(_str(d.get("kind")), _str(d.get("name")), _str(d.get("reason")))
        for d in map(_dict, _list(value))
    ]
