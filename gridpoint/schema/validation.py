"""The rules every run record obeys, before it is signed and after it is received.

validate_record() runs on every record whatever produced it: the anonymizer, `publish`, a
peer. Must never accept free text where a bucket or an id is expected: a record is what
leaves the node, and loose fields are where private strings would leak. Must never accept a
value the store cannot hold (every integer fits a signed 64-bit column, every text its
column's length) nor more parts than the limits below: a record that validates is always
storable. Error messages never echo a whole value: a peer controls it, and messages are logged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sized

from gridpoint.errors import RecordError
from gridpoint.schema.records import (
    SCHEMA_VERSION,
    CurvePoint,
    ParamValue,
    PrivacyGuarantee,
    RunRecord,
    SearchDimension,
)
from gridpoint.schema.vocabulary import (
    BALANCE_BUCKETS,
    DIMENSION_KINDS,
    DIRECTIONS,
    FAILURES,
    HUB_ID,
    IMAGE_SIZE_BUCKETS,
    KINDS,
    METHODS,
    SIZE_BUCKETS,
    STATUSES,
    TEXT_LENGTH_BUCKETS,
)

__all__ = [
    "MAX_AUDIENCE",
    "MAX_CHOICES",
    "MAX_CURVE_POINTS",
    "MAX_INT64",
    "MAX_MEMBERS",
    "MAX_NAMED_VALUES",
    "MAX_PARENTS",
    "MAX_SEARCH_DIMENSIONS",
    "is_node_id",
    "shown",
    "validate_record",
]

#: Largest integer a record may carry anywhere: the store keeps integers in signed 64-bit
#: columns (SQLite INTEGER, PostgreSQL BIGINT), and the wire's sint64 parameters are no wider.
MAX_INT64 = 2**63 - 1
#: The wire's unsigned 32-bit fields (a resumed federation's round).
MAX_UINT32 = 2**32 - 1
#: Most points of a learning curve.
MAX_CURVE_POINTS = 10_000
#: Most federation members of one record.
MAX_MEMBERS = 1_000
#: Most parent records (lineage) of one record.
MAX_PARENTS = 64
#: Most node ids in a record's audience.
MAX_AUDIENCE = 1_000
#: Most hyperparameters, and most metrics, of one record.
MAX_NAMED_VALUES = 256
#: Most searched dimensions of one record, and most choices of one categorical dimension.
MAX_SEARCH_DIMENSIONS = 256
MAX_CHOICES = 256
#: How much of an offending value an error message shows.
_SHOWN_CHARS = 40

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_SLUG = re.compile(r"[a-z][a-z0-9\-]{0,63}")
_LANGUAGE = re.compile(r"(|[a-z]{2})")
_PSEUDONYM = re.compile(r"(|[a-z0-9]{8,64})")
_NODE_ID = re.compile(r"[0-9a-f]{40}")
_RECORD_ID = re.compile(r"[0-9a-f]{64}")
_PERIOD = re.compile(r"(|\d{4}-(0[1-9]|1[0-2]))")
_CATEGORY = re.compile(r"[A-Za-z0-9_.\-+]{1,64}")


def _fail(path: str, problem: str) -> RecordError:
    return RecordError(f"record field {path}: {problem}")


def is_node_id(value: str) -> bool:
    """Whether value is written as a node id is: 40 lowercase hex digits."""
    return _NODE_ID.fullmatch(value) is not None


def shown(value: object) -> str:
    """repr(value), cut to a few dozen characters: enough to recognize, never a flood."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} chars)"


def _check_pattern(path: str, value: str, pattern: re.Pattern[str], what: str) -> None:
    if not pattern.fullmatch(value):
        raise _fail(path, f"{shown(value)} is not {what}")


def _check_int(path: str, value: int, low: int = 0, high: int = MAX_INT64) -> None:
    if not low <= value <= high:
        raise _fail(path, f"must be between {low} and {high}")


def _check_count(path: str, items: Sized, most: int) -> None:
    if len(items) > most:
        raise _fail(path, f"has {len(items)} entries, more than the limit of {most}")


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
    if record.failure not in FAILURES:
        raise _fail("failure", f"must be one of {', '.join(map(repr, FAILURES))}")
    if record.failure and record.status != "failed":
        raise _fail("failure", "only a failed run has a failure reason")
    _check_pattern("study", record.study, _PSEUDONYM, "a pseudonym (8-64 lowercase hex/letters)")
    _check_pattern("trial", record.trial, _PSEUDONYM, "a pseudonym (8-64 lowercase hex/letters)")
    _check_pattern("period", record.period, _PERIOD, "a month YYYY-MM")
    task = record.task
    _check_pattern("task.type", task.type, _SLUG, "a task type like 'text-classification'")
    _check_int("task.num_labels", task.num_labels, high=1_000_000)
    for name, bucket, allowed in (
        ("size_bucket", task.size_bucket, SIZE_BUCKETS),
        ("balance_bucket", task.balance_bucket, BALANCE_BUCKETS),
        ("text_length_bucket", task.text_length_bucket, TEXT_LENGTH_BUCKETS),
        ("image_size_bucket", task.image_size_bucket, IMAGE_SIZE_BUCKETS),
    ):
        if bucket not in allowed:
            raise _fail(f"task.{name}", f"{bucket!r} is not one of {', '.join(map(repr, allowed))}")
    _check_pattern("task.language", task.language, _LANGUAGE, "an ISO 639-1 code like 'en'")
    model = record.model
    if model.base:
        _check_pattern("model.base", model.base, HUB_ID, "a public hub id like 'org/model'")
    if model.family:
        _check_pattern("model.family", model.family, _SLUG, "a model family like 'bert'")
    if model.method not in METHODS:
        raise _fail("model.method", f"must be one of {', '.join(map(repr, METHODS))}")
    _check_int("model.num_parameters", model.num_parameters)
    _check_count("hyperparameters", record.hyperparameters, MAX_NAMED_VALUES)
    for name, value in record.hyperparameters.items():
        _check_pattern("hyperparameters", name, _NAME, "a parameter name")
        _check_param(f"hyperparameters.{name}", value)
    _validate_search_space(record.search_space)
    _validate_curve(record.curve)
    _check_count("metrics", record.metrics, MAX_NAMED_VALUES)
    for name, metric in record.metrics.items():
        _check_pattern(f"metrics.{name}", name, _NAME, "a metric name")
        _check_finite(f"metrics.{name}", metric)
    if record.objective_direction not in DIRECTIONS:
        raise _fail("objective.direction", "must be 'maximize' or 'minimize'")
    if bool(record.objective_metric) != bool(record.objective_direction):
        raise _fail("objective", "metric and direction go together")
    if record.objective_metric:
        _check_pattern("objective.metric", record.objective_metric, _NAME, "a metric name")
    _check_count("members", record.members, MAX_MEMBERS)
    for i, member in enumerate(record.members):
        _check_pattern(f"members[{i}]", member, _NODE_ID, "a node id")
    _check_count("parents", record.parents, MAX_PARENTS)
    for i, parent in enumerate(record.parents):
        _check_pattern(f"parents[{i}]", parent, _RECORD_ID, "a record id (64 hex digits)")
    if len(set(record.parents)) != len(record.parents):
        raise _fail("parents", "a record id appears twice")
    _check_count("audience", record.audience, MAX_AUDIENCE)
    for i, member in enumerate(record.audience):
        _check_pattern(f"audience[{i}]", member, _NODE_ID, "a node id")
    if list(record.audience) != sorted(set(record.audience)):
        # One order for one audience: equal content signs to equal bytes (and id).
        raise _fail("audience", "node ids must be sorted and appear once")
    if record.privacy is not None:
        _validate_privacy(record.privacy)
    if not 0 <= record.resumed_after_round <= MAX_UINT32:
        raise _fail("resumed_after_round", f"must be a round number from 0 to {MAX_UINT32}")
    if record.resumed_after_round and record.kind != "federated":
        raise _fail("resumed_after_round", "only a federated run resumes after a round")
    return record


#: What a record's privacy.protected and privacy.accountant may say.
PROTECTED = ("training", "evaluation", "both")
ACCOUNTANTS = ("rdp", "pld")


def _validate_privacy(privacy: PrivacyGuarantee) -> None:
    _check_finite("privacy.epsilon", privacy.epsilon)
    _check_finite("privacy.delta", privacy.delta)
    if not privacy.epsilon > 0:
        raise _fail("privacy.epsilon", "must be more than 0")
    if not 0 <= privacy.delta < 0.01:
        raise _fail("privacy.delta", "must be from 0 up to (not) 0.01")
    if privacy.protected not in PROTECTED:
        raise _fail("privacy.protected", f"must be one of {', '.join(PROTECTED)}")
    if privacy.accountant not in ACCOUNTANTS:
        raise _fail("privacy.accountant", f"must be one of {', '.join(ACCOUNTANTS)}")


def _check_param(path: str, value: ParamValue) -> None:
    # bool before int: bool is an int subclass, and always fits.
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        _check_int(path, value, low=-MAX_INT64 - 1)
    elif isinstance(value, float):
        _check_finite(path, value)
    else:
        _check_pattern(path, value, _CATEGORY, "a category name")


def _validate_search_space(space: tuple[SearchDimension, ...]) -> None:
    _check_count("search_space", space, MAX_SEARCH_DIMENSIONS)
    seen: set[str] = set()
    for i, dim in enumerate(space):
        path = f"search_space[{i}]"
        _check_pattern(f"{path}.name", dim.name, _NAME, "a parameter name")
        if dim.name in seen:
            raise _fail(f"{path}.name", f"{dim.name!r} appears twice")
        seen.add(dim.name)
        if dim.kind not in DIMENSION_KINDS:
            raise _fail(f"{path}.kind", f"must be one of {', '.join(DIMENSION_KINDS)}")
        # Bounds are checked for every kind: a categorical one carries them too, on the wire.
        for attr in ("low", "high", "step"):
            _check_finite(f"{path}.{attr}", getattr(dim, attr))
        if dim.kind == "categorical":
            if not dim.choices:
                raise _fail(f"{path}.choices", "a categorical dimension needs choices")
            _check_count(f"{path}.choices", dim.choices, MAX_CHOICES)
            for choice in dim.choices:
                _check_param(f"{path}.choices", choice)
            continue
        if dim.low > dim.high:
            raise _fail(f"{path}", f"low {dim.low} is above high {dim.high}")
        if dim.log and dim.low <= 0:
            raise _fail(f"{path}.low", "a log-scale domain needs low > 0")


def _validate_curve(curve: tuple[CurvePoint, ...]) -> None:
    _check_count("curve", curve, MAX_CURVE_POINTS)
    last_step = -1
    last_by_metric: dict[str, int] = {}
    for i, point in enumerate(curve):
        path = f"curve[{i}]"
        _check_pattern(f"{path}.metric", point.metric, _NAME, "a metric name")
        _check_finite(f"{path}.value", point.value)
        _check_int(f"{path}.step", point.step)
        if point.step < last_step:
            raise _fail(
                f"{path}.step", f"curve is not ordered by step ({point.step} after {last_step})"
            )
        if last_by_metric.get(point.metric, -1) >= point.step:
            raise _fail(f"{path}.step", f"metric {point.metric!r} has step {point.step} twice")
        last_step = point.step
        last_by_metric[point.metric] = point.step


# At most 19 digits: every int64, and never a number too long for int() to parse.
