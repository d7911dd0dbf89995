"""What a chart of curves shows, apart from drawing it: panels of named series, x always
whole numbers (trials, rounds, steps). plots.py draws them with matplotlib for `gridpoint
plot`; figures.py turns them into plotly.js figures for the web UI.

Kept free of matplotlib and plotly so that the views and the terminal commands load without.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Panel", "Series", "Style", "best_so_far"]

Style = Literal["line", "step", "points"]


@dataclass(frozen=True)
class Series:
    """One line or set of points: x and y of equal length, and its legend label; group names
    the organization (series of one group share a colour); links[i], when given, is the page
    point i opens."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: Style = "line"
    group: str = ""
    links: Sequence[str] = ()


@dataclass(frozen=True)
class Panel:
    """One set of axes; x counts trials, rounds or steps (ticks fall on whole numbers)."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)


def best_so_far(values: Sequence[float], maximize: bool) -> list[float]:
    """The best value seen up to each position."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max(out[-1], v) if maximize else min(out[-1], v)))
    return out
