"""What a chart shows, apart from drawing it: panels of named series (plots.py draws them).

Kept free of matplotlib so that the views and the terminal commands load without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Panel", "Series", "Style", "best_so_far", "spans_decades"]

Style = Literal["line", "step", "points"]


@dataclass(frozen=True)
class Series:
    """One line or set of points: x and y of equal length, and its legend label."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: Style = "line"


@dataclass(frozen=True)
class Panel:
    """One set of axes."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log_x: bool = False


def spans_decades(values: Sequence[float]) -> bool:
    """True for positive values over more than two orders of magnitude (a log axis reads them)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 100


def best_so_far(values: Sequence[float], maximize: bool) -> list[float]:
    """The best value seen up to each position."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max(out[-1], v) if maximize else min(out[-1], v)))
    return out
