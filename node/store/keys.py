"""The one registry of catalog filter keys: what each means, its type, where it is stored.

The filter parser checks keys and value types here, the SQL store finds each key's column
here, and live query reads a key's value from a record here to merge and sort peers'
answers. A new key is one entry in KEYS (plus its column, by migration).

Must never hold anything that depends on a database or the wire: it is pure schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gridpoint.errors import FilterError
from gridpoint.schema import RunRecord
from gridpoint.schema.validation import shown
from gridpoint.schema.vocabulary import (
    BALANCE_BUCKETS,
    IMAGE_SIZE_BUCKETS,
    KINDS,
    METHODS,
    SIZE_BUCKETS,
    STATUSES,
    TEXT_LENGTH_BUCKETS,
)

if TYPE_CHECKING:
    from gridpoint.node.store.base import StoredRecord

__all__ = ["KEYS", "PREFIXED", "KeySpec", "ValueType", "key_spec", "key_value"]

#: "str" compares with quoted strings, "num" with numbers, "any" with either (parameters).
ValueType = Literal["str", "num", "any"]
SortValue = float | str | None


@dataclass(frozen=True)
class KeySpec:
    """A filter key: its value type, its column in the records table (None for the families
    params.<name> and metrics.<name>, stored in their own tables), and how to read it."""

    name: str
    type: ValueType
    column: str | None
    read: Callable[[StoredRecord], SortValue]
    #: What the key means, for the filter reference (`catalog query --help`, the README).
    about: str = ""


def _plain(
    name: str,
    column: str,
    type_: ValueType,
    read: Callable[[RunRecord], str | float],
    about: str,
) -> KeySpec:
    def value(stored: StoredRecord) -> SortValue:
        raw = read(stored.record)
        return raw if isinstance(raw, str) else float(raw)

    return KeySpec(name, type_, column, value, about)


def _one_of(values: tuple[str, ...]) -> str:
    return "one of " + ", ".join(f"'{v}'" if v else "''" for v in values)


def _privacy(stored: StoredRecord, field: str) -> SortValue:
    privacy = stored.record.privacy
    if privacy is None:
        return None
    value = getattr(privacy, field)
    return value if isinstance(value, str) else float(value)


KEYS: dict[str, KeySpec] = {
    spec.name: spec
    for spec in (
        _plain("kind", "kind", "str", lambda r: r.kind, _one_of(KINDS)),
        _plain("study", "study", "str", lambda r: r.study,
               "the study's pseudonym (on its own node, also the study's name)"),
        _plain("status", "status", "str", lambda r: r.status, _one_of(STATUSES)),
        _plain("period", "period", "str", lambda r: r.period, "the month (or quarter's first month) it ran, 'YYYY-MM'"),
        _plain("task.type", "task_type", "str", lambda r: r.task.type,
               "e.g. 'text-classification', 'causal-lm'"),
        _plain("task.num_labels", "task_num_labels", "num", lambda r: r.task.num_labels,
               "classes (0: none)"),
        _plain("task.size_bucket", "task_size_bucket", "str", lambda r: r.task.size_bucket,
               _one_of(SIZE_BUCKETS)),
        _plain("task.balance_bucket", "task_balance_bucket", "str",
               lambda r: r.task.balance_bucket, _one_of(BALANCE_BUCKETS)),
        _plain("task.language", "task_language", "str", lambda r: r.task.language,
               "ISO 639-1 code, e.g. 'en'"),
        _plain("task.text_length_bucket", "task_text_length_bucket", "str",
               lambda r: r.task.text_length_bucket, _one_of(TEXT_LENGTH_BUCKETS)),
        _plain("task.image_size_bucket", "task_image_size_bucket", "str",
               lambda r: r.task.image_size_bucket, _one_of(IMAGE_SIZE_BUCKETS)),
        _plain("model.base", "model_base", "str", lambda r: r.model.base,
               "public hub id of the base model, e.g. 'bert-base-uncased'"),
        _plain("model.family", "model_family", "str", lambda r: r.model.family,
               "e.g. 'bert', 'llama'"),
        _plain("model.method", "model_method", "str", lambda r: r.model.method,
               _one_of(METHODS)),
        _plain("model.num_parameters", "model_num_parameters", "num",
               lambda r: r.model.num_parameters, "parameters of the base model"),
        KeySpec("privacy.epsilon", "num", "privacy_epsilon",
                lambda stored: _privacy(stored, "epsilon"),
                "the record's differential-privacy epsilon (none: exact values)"),
        KeySpec("privacy.delta", "num", "privacy_delta",
                lambda stored: _privacy(stored, "delta"), "its delta"),
        KeySpec("privacy.protected", "str", "privacy_protected",
                lambda stored: _privacy(stored, "protected") or "",
                "rows protected: 'training', 'evaluation', 'both' ('': exact)"),
        KeySpec("signer", "str", "signer_id", lambda stored: stored.signer_id,
                "node id of the record's author"),
        KeySpec("id", "str", "id", lambda stored: stored.id, "the record's id"),
    )
}  # fmt: skip


def _param(record: RunRecord, name: str) -> SortValue:
    value = record.hyperparameters.get(name)
    return None if value is None else value if isinstance(value, str) else float(value)


#: Key families: params.<name> (typed per value) and metrics.<name> (numbers).
PREFIXED: dict[str, tuple[ValueType, Callable[[RunRecord, str], SortValue]]] = {
    "params.": ("any", _param),
    "metrics.": ("num", lambda record, name: record.metrics.get(name)),
}


def _reader(
    read: Callable[[RunRecord, str], SortValue], name: str
) -> Callable[[StoredRecord], SortValue]:
    return lambda stored: read(stored.record, name)


def key_spec(key: str, column: int | None = None) -> KeySpec:
    """The spec of a key; FilterError (pointing at column) for an unknown one."""
    if key in KEYS:
        return KEYS[key]
    for prefix, (type_, read) in PREFIXED.items():
        name = key.removeprefix(prefix)
        if key.startswith(prefix) and name:
            return KeySpec(key, type_, None, _reader(read, name))
    raise FilterError(
        f"unknown key {shown(key)}; use {', '.join(k for k in KEYS if '.' not in k)}, "
        "task.<field>, model.<field>, privacy.<field>, params.<name> or metrics.<name>",
        column,
    )


def key_value(stored: StoredRecord, key: str) -> SortValue:
    """The value of key in a stored record (None when the record has none)."""
    return key_spec(key).read(stored)
