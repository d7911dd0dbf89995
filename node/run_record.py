"""The public run record as gridpoint code sees it, and the rules every record must obey.

These dataclasses are the domain type; node/serde.py converts them to and from the
gridpoint.v1.RunRecord wire message. record_from_json() is the door for records coming from
other tools (`gridpoint publish`): it refuses unknown keys, wrong types, NaN and unordered
curves with a message naming the field. validate_record() runs on every record before it is
signed, whatever produced it.

Must never accept free text where a bucket or an id is expected: a record is what leaves the
node, and loose fields are where private strings would leak.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from node.errors import RecordError

__all__ = [
    "BALANCE_BUCKETS",
    "KINDS",
    "SIZE_BUCKETS",
    "STATUSES",
    "TEXT_LENGTH_BUCKETS",
    "BaseModelInfo",
    "CurvePoint",
    "ParamValue",
    "RunRecord",
    "SearchDimension",
    "TaskDescriptor",
    "record_from_json",
    "validate_record",
]

ParamValue = float | int | str | bool

SCHEMA_VERSION = 1
KINDS = ("trial", "federated")
STATUSES = ("complete", "pruned", "failed")
SIZE_BUCKETS = ("<1k", "1k-10k", "10k-100k", "100k-1m", ">1m")
BALANCE_BUCKETS = ("", "low", "medium", "high")
TEXT_LENGTH_BUCKETS = ("", "<32", "32-128", "128-512", ">512")
DIMENSION_KINDS = ("float", "int", "categorical")
DIRECTIONS = ("", "maximize", "minimize")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_SLUG = re.compile(r"[a-z][a-z0-9\-]{0,63}")
_LANGUAGE = re.compile(r"(|[a-z]{2})")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?")
_PSEUDONYM = re.compile(r"(|[a-z0-9]{8,64})")
_NODE_ID = re.compile(r"[0-9a-f]{40}")
_PERIOD = re.compile(r"(|\d{4}-(0[1-9]|1[0-2]))")
_CATEGORY = re.compile(r"[A-Za-z0-9_.\-+]{1,64}")


@dataclass(frozen=True)
class TaskDescriptor:
    """Coarse meta-features of a private dataset (see records.proto for each bucket)."""

    type: str
    num_labels: int = 0
    size_bucket: str = ""
    balance_bucket: str = ""
    language: str = ""
    text_length_bucket: str = ""


@dataclass(frozen=True)
class BaseModelInfo:
    """The public identity of the model a run fine-tuned."""

    base: str = ""
    family: str = ""
    num_parameters: int = 0
    method: str = "full"


@dataclass(frozen=True)
class SearchDimension:
    """One searched hyperparameter domain."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float = 0.0
    choices: tuple[str, ...] = ()


class CurvePoint(NamedTuple):
    """A metric value at an optimizer step (or federated round).

    A NamedTuple rather than a dataclass: curves have hundreds of points and decoding them
    sits on the sync path, where a frozen dataclass's constructor costs several times more.
    """

    step: int
    metric: str
    value: float


@dataclass(frozen=True)
class RunRecord:
    """One run as published: only what the allowlist lets leave a node."""

    task: TaskDescriptor
    model: BaseModelInfo
    hyperparameters: Mapping[str, ParamValue]
    curve: tuple[CurvePoint, ...]
    metrics: Mapping[str, float]
    kind: str = "trial"
    study: str = ""
    trial: str = ""
    search_space: tuple[SearchDimension, ...] = ()
    status: str = "complete"
    period: str = ""
    objective_metric: str = ""
    objective_direction: str = ""
    members: tuple[str, ...] = field(default_factory=tuple)
    schema_version: int = SCHEMA_VERSION


def _fail(path: str, problem: str) -> RecordError:
    return RecordError(f"record field {path}: {problem}")


def _check_pattern(path: str, value: str, pattern: re.Pattern[str], what: str) -> None:
    if not pattern.fullmatch(value):
        raise _fail(path, f"{value!r} is not {what}")


def _check_finite(path: str, value: float) -> None:
    if not math.isfinite(value):
        raise _fail(path, "must be a finite number (NaN and infinity are refused)")


def validate_record(record: RunRecord) -> RunRecord:
    """Checks every rule a publishable record obeys; returns it or raises RecordError."""
    if record.schema_version != SCHEMA_VERSION:
        raise _fail("schema_version", f"only version {SCHEMA_VERSION} is known")
    if record.kind not in KINDS:
        raise _fail("kind", f"must be one of {', '.join(KINDS)}")
    if record.status not in STATUSES:
        raise _fail("status", f"must be one of {', '.join(STATUSES)}")
    _check_pattern("study", record.study, _PSEUDONYM, "a pseudonym (8-64 lowercase hex/letters)")
    _check_pattern("trial", record.trial, _PSEUDONYM, "a pseudonym (8-64 lowercase hex/letters)")
    _check_pattern("period", record.period, _PERIOD, "a month YYYY-MM")
    task = record.task
    _check_pattern("task.type", task.type, _SLUG, "a task type like 'text-classification'")
    if not 0 <= task.num_labels <= 1_000_000:
        raise _fail("task.num_labels", "must be between 0 and 1000000")
    for name, value, allowed in (
        ("size_bucket", task.size_bucket, SIZE_BUCKETS),
        ("balance_bucket", task.balance_bucket, BALANCE_BUCKETS),
        ("text_length_bucket", task.text_length_bucket, TEXT_LENGTH_BUCKETS),
    ):
        if value not in allowed:
            raise _fail(f"task.{name}", f"{value!r} is not one of {', '.join(map(repr, allowed))}")
    _check_pattern("task.language", task.language, _LANGUAGE, "an ISO 639-1 code like 'en'")
    model = record.model
    if model.base:
        _check_pattern("model.base", model.base, _HUB_ID, "a public hub id like 'org/model'")
    if model.family:
        _check_pattern("model.family", model.family, _SLUG, "a model family like 'bert'")
    if model.method not in ("full", "lora"):
        raise _fail("model.method", "must be 'full' or 'lora'")
    if model.num_parameters < 0:
        raise _fail("model.num_parameters", "must not be negative")
    for name, value in record.hyperparameters.items():
        path = f"hyperparameters.{name}"
        _check_pattern(path, name, _NAME, "a parameter name")
        if isinstance(value, float):
            _check_finite(path, value)
        elif isinstance(value, str):
            _check_pattern(path, value, _CATEGORY, "a category name")
    _validate_search_space(record.search_space)
    _validate_curve(record.curve)
    for name, value in record.metrics.items():
        _check_pattern(f"metrics.{name}", name, _NAME, "a metric name")
        _check_finite(f"metrics.{name}", value)
    if record.objective_direction not in DIRECTIONS:
        raise _fail("objective.direction", "must be 'maximize' or 'minimize'")
    if bool(record.objective_metric) != bool(record.objective_direction):
        raise _fail("objective", "metric and direction go together")
    if record.objective_metric:
        _check_pattern("objective.metric", record.objective_metric, _NAME, "a metric name")
    for i, member in enumerate(record.members):
        _check_pattern(f"members[{i}]", member, _NODE_ID, "a node id")
    return record


def _validate_search_space(space: tuple[SearchDimension, ...]) -> None:
    seen: set[str] = set()
    for i, dim in enumerate(space):
        path = f"search_space[{i}]"
        _check_pattern(f"{path}.name", dim.name, _NAME, "a parameter name")
        if dim.name in seen:
            raise _fail(f"{path}.name", f"{dim.name!r} appears twice")
        seen.add(dim.name)
        if dim.kind not in DIMENSION_KINDS:
            raise _fail(f"{path}.kind", f"must be one of {', '.join(DIMENSION_KINDS)}")
        if dim.kind == "categorical":
            if not dim.choices:
                raise _fail(f"{path}.choices", "a categorical dimension needs choices")
            for choice in dim.choices:
                _check_pattern(f"{path}.choices", choice, _CATEGORY, "a category name")
            continue
        for attr in ("low", "high", "step"):
            _check_finite(f"{path}.{attr}", getattr(dim, attr))
        if dim.low > dim.high:
            raise _fail(f"{path}", f"low {dim.low} is above high {dim.high}")
        if dim.log and dim.low <= 0:
            raise _fail(f"{path}.low", "a log-scale domain needs low > 0")


def _validate_curve(curve: tuple[CurvePoint, ...]) -> None:
    last_step = -1
    last_by_metric: dict[str, int] = {}
    for i, point in enumerate(curve):
        path = f"curve[{i}]"
        _check_pattern(f"{path}.metric", point.metric, _NAME, "a metric name")
        _check_finite(f"{path}.value", point.value)
        if point.step < 0:
            raise _fail(f"{path}.step", "must not be negative")
        if point.step < last_step:
            raise _fail(
                f"{path}.step", f"curve is not ordered by step ({point.step} after {last_step})"
            )
        if last_by_metric.get(point.metric, -1) >= point.step:
            raise _fail(f"{path}.step", f"metric {point.metric!r} has step {point.step} twice")
        last_step = point.step
        last_by_metric[point.metric] = point.step


# --- JSON input --------------------------------------------------------------------------

_TOP_KEYS = {
    "task", "model", "hyperparameters", "curve", "metrics", "kind", "study", "trial",
    "search_space", "status", "period", "objective", "members", "schema_version",
}  # fmt: skip
_REQUIRED = ("task", "model", "hyperparameters", "curve", "metrics")


def _obj(
    path: str, value: Any, allowed: set[str], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path or "(top level)", f"must be an object, got {_json_type(value)}")
    for key in value:
        if key not in allowed:
            raise _fail(f"{path}.{key}".lstrip("."), "unknown key")
    for key in required:
        if key not in value:
            raise _fail(f"{path}.{key}".lstrip("."), "is required")
    return value


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )


def _str(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"must be a string, got {_json_type(value)}")
    return value


def _int(path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"must be an integer, got {_json_type(value)}")
    return value


def _num(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, f"must be a number, got {_json_type(value)}")
    _check_finite(path, float(value))
    return float(value)


def _list(path: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"must be an array, got {_json_type(value)}")
    return value


def _param(path: str, value: Any) -> ParamValue:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        _check_finite(path, value)
        return value
    raise _fail(path, f"must be a number, string or boolean, got {_json_type(value)}")


def record_from_json(data: Any) -> RunRecord:
    """Builds and validates a record from parsed JSON; RecordError names the bad field."""
    top = _obj("", data, _TOP_KEYS, _REQUIRED)
    task = _obj(
        "task",
        top["task"],
        {"type", "num_labels", "size_bucket", "balance_bucket", "language", "text_length_bucket"},
        ("type",),
    )
    model = _obj("model", top["model"], {"base", "family", "num_parameters", "method"})
    objective = _obj("objective", top.get("objective", {}), {"metric", "direction"})
    hyper = _obj("hyperparameters", top["hyperparameters"], set(top["hyperparameters"]))
    metrics = _obj("metrics", top["metrics"], set(top["metrics"]))
    record = RunRecord(
        task=TaskDescriptor(
            type=_str("task.type", task["type"]),
            num_labels=_int("task.num_labels", task.get("num_labels", 0)),
            size_bucket=_str("task.size_bucket", task.get("size_bucket", "")),
            balance_bucket=_str("task.balance_bucket", task.get("balance_bucket", "")),
            language=_str("task.language", task.get("language", "")),
            text_length_bucket=_str("task.text_length_bucket", task.get("text_length_bucket", "")),
        ),
        model=BaseModelInfo(
            base=_str("model.base", model.get("base", "")),
            family=_str("model.family", model.get("family", "")),
            num_parameters=_int("model.num_parameters", model.get("num_parameters", 0)),
            method=_str("model.method", model.get("method", "full")),
        ),
        hyperparameters={
            _str("hyperparameters", k): _param(f"hyperparameters.{k}", v) for k, v in hyper.items()
        },
        curve=tuple(_curve_point(i, p) for i, p in enumerate(_list("curve", top["curve"]))),
        metrics={k: _num(f"metrics.{k}", v) for k, v in metrics.items()},
        kind=_str("kind", top.get("kind", "trial")),
        study=_str("study", top.get("study", "")),
        trial=_str("trial", top.get("trial", "")),
        search_space=tuple(
            _dimension(i, d)
            for i, d in enumerate(_list("search_space", top.get("search_space", [])))
        ),
        status=_str("status", top.get("status", "complete")),
        period=_str("period", top.get("period", "")),
        objective_metric=_str("objective.metric", objective.get("metric", "")),
        objective_direction=_str("objective.direction", objective.get("direction", "")),
        members=tuple(
            _str(f"members[{i}]", m) for i, m in enumerate(_list("members", top.get("members", [])))
        ),
        schema_version=_int("schema_version", top.get("schema_version", SCHEMA_VERSION)),
    )
    return validate_record(record)


def _curve_point(i: int, value: Any) -> CurvePoint:
    path = f"curve[{i}]"
    point = _obj(path, value, {"step", "metric", "value"}, ("step", "metric", "value"))
    return CurvePoint(
        step=_int(f"{path}.step", point["step"]),
        metric=_str(f"{path}.metric", point["metric"]),
        value=_num(f"{path}.value", point["value"]),
    )


def _dimension(i: int, value: Any) -> SearchDimension:
    path = f"search_space[{i}]"
    dim = _obj(
        path, value, {"name", "kind", "low", "high", "log", "step", "choices"}, ("name", "kind")
    )
    log = dim.get("log", False)
    if not isinstance(log, bool):
        raise _fail(f"{path}.log", f"must be a boolean, got {_json_type(log)}")
    return SearchDimension(
        name=_str(f"{path}.name", dim["name"]),
        kind=_str(f"{path}.kind", dim["kind"]),
        low=_num(f"{path}.low", dim.get("low", 0.0)),
        high=_num(f"{path}.high", dim.get("high", 0.0)),
        log=log,
        step=_num(f"{path}.step", dim.get("step", 0.0)),
        choices=tuple(
            _str(f"{path}.choices[{j}]", c)
            for j, c in enumerate(_list(f"{path}.choices", dim.get("choices", [])))
        ),
    )
