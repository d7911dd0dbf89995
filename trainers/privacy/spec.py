"""A study's privacy mode: what `[privacy]` in a study file (or the node's default) asks for.

    [privacy]
    epsilon = 8.0          # the study's whole budget, for one row of the protected data
    delta = 1e-5
    protect = "both"       # training | evaluation | both
    accountant = "rdp"     # rdp | pld (dp-accounting's accountants)
    max_grad_norm = 1.0    # DP-SGD's per-example clipping bound
    publish = "all"        # all: every trial's record | best: one record, Papernot-Steinke

Rows of the training and the evaluation split are different rows: each split's mechanisms
are accounted on their own and the stated epsilon holds for a row of either (parallel
composition). Must never import torch or opacus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gridpoint.errors import StudyConfigError

__all__ = [
    "ACCOUNTANTS",
    "PROTECTS",
    "PUBLISH",
    "RELEASABLE_METRICS",
    "PrivacySpec",
    "privacy_from_table",
]

PROTECTS = ("training", "evaluation", "both")
ACCOUNTANTS = ("rdp", "pld")
PUBLISH = ("all", "best")
#: The evaluation values a private study can release, with their sensitivity times the
#: evaluation set's size: accuracy moves by at most 1/n when one evaluation row is added,
#: removed or replaced. Other metrics (F1, losses) have no such bound and stay private.
RELEASABLE_METRICS: dict[str, float] = {"accuracy": 1.0}
_KEYS = {"enabled", "epsilon", "delta", "protect", "accountant", "max_grad_norm", "publish"}


@dataclass(frozen=True)
class PrivacySpec:
    """A validated privacy mode."""

    epsilon: float
    delta: float
    protect: str = "both"
    accountant: str = "rdp"
    max_grad_norm: float = 1.0
    publish: str = "all"

    @property
    def training(self) -> bool:
        """Whether the training rows are protected (DP-SGD)."""
        return self.protect in ("training", "both")

    @property
    def evaluation(self) -> bool:
        """Whether the evaluation rows are protected (released evaluation values)."""
        return self.protect in ("evaluation", "both")

    def released_metrics(self, measured: set[str]) -> set[str]:
        """Which of the measured metrics may be published under this mode.

        The training loss is an exact average over training rows: never released when they
        are protected. Protected evaluation rows release only metrics of known sensitivity.
        """
        out = set(measured)
        if self.training:
            out.discard("train_loss")
        if self.evaluation:
            out &= set(RELEASABLE_METRICS) | ({"train_loss"} if not self.training else set())
        return out


def _fail(key: str, problem: str) -> StudyConfigError:
    return StudyConfigError(f"study config: privacy.{key}: {problem}")


def _number(table: dict[str, Any], key: str, default: float | None) -> float:
    if key not in table:
        if default is None:
            raise _fail(key, "is required")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, "must be a number")
    if not math.isfinite(value):
        raise _fail(key, "must be finite")
    return float(value)


def _choice(table: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = table.get(key, allowed[0] if key != "protect" else "both")
    if not isinstance(value, str) or value not in allowed:
        raise _fail(key, f"must be one of {', '.join(allowed)}")
    return value


def privacy_from_table(table: dict[str, Any]) -> PrivacySpec | None:
    """The privacy mode a `[privacy]` table asks for (None with `enabled = false`)."""
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise _fail(unknown[0], "unknown key")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail("enabled", "must be a boolean")
    if not enabled:
        return None
    epsilon = _number(table, "epsilon", None)
    if not 0 < epsilon <= 100:
        raise _fail("epsilon", "must be more than 0 and at most 100")
    delta = _number(table, "delta", 1e-5)
    if not 0 < delta < 0.01:
        raise _fail("delta", "must be more than 0 and less than 0.01")
    norm = _number(table, "max_grad_norm", 1.0)
    if not 0 < norm <= 1000:
        raise _fail("max_grad_norm", "must be more than 0 and at most 1000")
    spec = PrivacySpec(
        epsilon=epsilon,
        delta=delta,
        protect=_choice(table, "protect", PROTECTS),
        accountant=_choice(table, "accountant", ACCOUNTANTS),
        max_grad_norm=norm,
        publish=_choice(table, "publish", PUBLISH),
    )
    if spec.publish == "best" and spec.accountant != "rdp":
        raise _fail(
            "publish", "'best' is accounted by the RDP accountant only (accountant = 'rdp')"
        )
    return spec
