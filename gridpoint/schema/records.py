"""The public run record: the one domain type of a run for every layer.

The trainers fill the task descriptor, curve and search dimensions; the anonymizer builds the
record; the node's serde converts it to and from the gridpoint.v1.RunRecord wire message;
validation.py holds the rules every record must obey. Must never import anything but the
standard library: users' code, the daemon and the trainers all import these types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "SCHEMA_VERSION",
    "BaseModelInfo",
    "CurvePoint",
    "ParamValue",
    "PrivacyGuarantee",
    "RunRecord",
    "SearchDimension",
    "TaskDescriptor",
    "choice_from_text",
    "choice_text",
]

ParamValue = float | int | str | bool

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TaskDescriptor:
    """Coarse meta-features of a private dataset (see records.proto for each bucket)."""

    type: str
    num_labels: int = 0
    size_bucket: str = ""
    balance_bucket: str = ""
    language: str = ""
    text_length_bucket: str = ""
    image_size_bucket: str = ""


@dataclass(frozen=True)
class BaseModelInfo:
    """The public identity of the model a run fine-tuned."""

    base: str = ""
    family: str = ""
    num_parameters: int = 0
    method: str = "full"


@dataclass(frozen=True)
class SearchDimension:
    """One searched hyperparameter domain: the study file's, Optuna's and the record's.

    Categorical choices keep their type here (8, 1e-3, True, "adamw"); on the wire they
    travel as text (choice_text) and come back typed (choice_from_text).
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float = 0.0
    choices: tuple[ParamValue, ...] = ()


class CurvePoint(NamedTuple):
    """A metric value at an optimizer step (or federated round).

    A NamedTuple rather than a dataclass: curves have hundreds of points and decoding them
    sits on the sync path, where a frozen dataclass's constructor costs several times more.
    """

    step: int
    metric: str
    value: float


@dataclass(frozen=True)
class PrivacyGuarantee:
    """What publishing a run cost in differential privacy (see records.proto's Privacy).

    epsilon and delta are the whole release's (the study's, for a trial), with respect to
    one row of the protected data; protected: "training", "evaluation" or "both"; accountant:
    how the composition was accounted ("rdp" or "pld", by dp-accounting).
    """

    epsilon: float
    delta: float
    protected: str
    accountant: str


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
    failure: str = ""
    #: Lineage: ids of the records this run derives from (see records.proto).
    parents: tuple[str, ...] = field(default_factory=tuple)
    #: Node ids allowed to hold a copy; empty for every node that trusts the author.
    audience: tuple[str, ...] = field(default_factory=tuple)
    #: The differential-privacy cost of the release this record belongs to (None: exact values).
    privacy: PrivacyGuarantee | None = None
    #: A federated run: the last round completed before the host restarted (0: no restart).
    resumed_after_round: int = 0
    schema_version: int = SCHEMA_VERSION


_INT_TEXT = re.compile(r"-?[0-9]{1,19}")
_FLOAT_TEXT = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def choice_text(choice: ParamValue) -> str:
    """A categorical choice as the wire carries it."""
    return str(choice)


def choice_from_text(text: str) -> ParamValue:
    """The typed choice back from its text: integers, decimals and True/False are parsed.

    A number no record may hold (an integer past 64 bits, "1e999" read as infinity) stays the
    text it was: a categorical choice written as that text is a valid record, and must still
    be one on the other side of the wire.
    """
    if text in ("True", "False"):
        return text == "True"
    if _INT_TEXT.fullmatch(text):
        whole = int(text)
        return whole if -(2**63) <= whole < 2**63 else text
    if _FLOAT_TEXT.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else text
    return text
