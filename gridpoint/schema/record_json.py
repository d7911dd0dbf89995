"""The JSON form of a run record: the door for records made by other tools (`gridpoint publish`).

load_record_json() reads the text (bounded in size and nesting before the parser sees it);
record_from_json() refuses unknown keys, wrong types, NaN and unordered curves with a message
naming the field, then runs validate_record(). Must never accept a key it does not know:
loose fields are where private strings would leak; never hand the JSON parser text it could
recurse on without bound.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from typing import Any

from gridpoint.errors import RecordError
from gridpoint.schema.records import (
    SCHEMA_VERSION,
    BaseModelInfo,
    CurvePoint,
    ParamValue,
    PrivacyGuarantee,
    RunRecord,
    SearchDimension,
    TaskDescriptor,
)
from gridpoint.schema.validation import validate_record

__all__ = [
    "MAX_JSON_CHARS",
    "MAX_JSON_DEPTH",
    "load_record_json",
    "record_from_json",
    "record_to_json",
]

#: Largest record JSON text accepted (a record's signed form is capped well below this).
MAX_JSON_CHARS = 8 * 1024 * 1024
#: Deepest nesting of arrays and objects accepted; a record needs 4.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def load_record_json(text: str, source: str = "the record") -> object:
    """Parses record JSON text; RecordError (one line, naming source) for anything unusable."""
    if len(text) > MAX_JSON_CHARS:
        raise RecordError(f"{source} is larger than {MAX_JSON_CHARS} characters")
    depth = deepest = 0
    # Strings are cut out first: brackets inside them do not nest.
    for char in re.sub(r"[^\[\]{}]", "", _JSON_STRING.sub("", text)):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise RecordError(f"{source} nests arrays or objects more than {MAX_JSON_DEPTH} deep")
    try:
        data: object = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    return data


def _refuse_constant(name: str) -> float:
    raise RecordError(f"{name} is not allowed in a record (values must be finite numbers)")


def _fail(path: str, problem: str) -> RecordError:
    return RecordError(f"record field {path}: {problem}")


def _check_finite(path: str, value: float) -> None:
    if not math.isfinite(value):
        raise _fail(path, "must be a finite number (NaN and infinity are refused)")


_TOP_KEYS = {
    "task", "model", "hyperparameters", "curve", "metrics", "kind", "study", "trial",
    "search_space", "status", "period", "objective", "members", "failure", "schema_version",
    "parents", "audience", "privacy", "resumed_after_round",
}  # fmt: skip
_TASK_KEYS = {
    "type", "num_labels", "size_bucket", "balance_bucket", "language", "text_length_bucket",
    "image_size_bucket",
}  # fmt: skip
_REQUIRED = ("task", "model", "hyperparameters", "curve", "metrics")


def _obj(
    path: str, value: Any, allowed: set[str], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path or "(top level)", f"must be an object, got {_json_type(value)}")
    for key in value:
        if key not in allowed:
            # The key is the sender's text: named, but never at full length.
            name = key if len(key) <= 64 else f"{key[:40]}..."
            raise _fail(f"{path}.{name}".lstrip("."), "unknown key")
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
        _TASK_KEYS,
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
            image_size_bucket=_str("task.image_size_bucket", task.get("image_size_bucket", "")),
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
        failure=_str("failure", top.get("failure", "")),
        parents=tuple(
            _str(f"parents[{i}]", p) for i, p in enumerate(_list("parents", top.get("parents", [])))
        ),
        audience=tuple(
            _str(f"audience[{i}]", a)
            for i, a in enumerate(_list("audience", top.get("audience", [])))
        ),
        privacy=_privacy(top["privacy"]) if top.get("privacy") is not None else None,
        resumed_after_round=_int("resumed_after_round", top.get("resumed_after_round", 0)),
        schema_version=_int("schema_version", top.get("schema_version", SCHEMA_VERSION)),
    )
    return validate_record(record)


def _privacy(value: Any) -> PrivacyGuarantee:
    keys = ("epsilon", "delta", "protected", "accountant")
    table = _obj("privacy", value, set(keys), keys)
    return PrivacyGuarantee(
        epsilon=_num("privacy.epsilon", table["epsilon"]),
        delta=_num("privacy.delta", table["delta"]),
        protected=_str("privacy.protected", table["protected"]),
        accountant=_str("privacy.accountant", table["accountant"]),
    )


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
            _param(f"{path}.choices[{j}]", c)
            for j, c in enumerate(_list(f"{path}.choices", dim.get("choices", [])))
        ),
    )


def record_to_json(record: RunRecord) -> dict[str, Any]:
    """A record as plain JSON-ready data (the shape `publish` accepts, plus every field)."""
    return {
        "kind": record.kind,
        "study": record.study,
        "trial": record.trial,
        "task": asdict(record.task),
        "model": asdict(record.model),
        "search_space": [{**asdict(d), "choices": list(d.choices)} for d in record.search_space],
        "hyperparameters": dict(sorted(record.hyperparameters.items())),
        "curve": [p._asdict() for p in record.curve],
        "metrics": dict(sorted(record.metrics.items())),
        "status": record.status,
        "period": record.period,
        "objective": {"metric": record.objective_metric, "direction": record.objective_direction},
        "members": list(record.members),
        "failure": record.failure,
        "parents": list(record.parents),
        "audience": list(record.audience),
        # Only on a private record: an exact one's JSON is what it was before this field.
        **({"privacy": asdict(record.privacy)} if record.privacy is not None else {}),
        # Only on a resumed federation, for the same reason.
        **(
            {"resumed_after_round": record.resumed_after_round}
            if record.resumed_after_round
            else {}
        ),
        "schema_version": record.schema_version,
    }
