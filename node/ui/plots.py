"""Every chart gridpoint draws, with matplotlib (Agg, no display): SVG for the UI's pages,
PNG or SVG files for `gridpoint plot`.

A chart is a list of panels (gridpoint.node.ui.charts) side by side. Each drawn line gets an
SVG id (`series-P-S`: panel P, series S), so a page's chart can be checked point by point.

x counts trials, rounds or steps: its ticks fall on whole numbers. Labels are plain text
(mathtext off), so a `$` in a peer's name or a parameter's never makes matplotlib raise.

Must never import pyplot (global state, not thread-safe under a web server) nor draw
anything it was not given: the callers decide what is private.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gridpoint.node.ui.charts import Panel

__all__ = ["render"]

Format = Literal["svg", "png"]

# Deterministic SVG (same data, same bytes) with text as text: the browser draws it with
# its own fonts, so a page needs no font file.
rcParams["svg.hashsalt"] = "gridpoint"
rcParams["svg.fonttype"] = "none"
rcParams["font.family"] = "sans-serif"
# Every point is drawn (no path simplification): a chart can be checked point by point.
rcParams["path.simplify"] = False
# Names come from peers and study files: "$x$" is a name, never a formula to typeset.
rcParams["text.parse_math"] = False


def render(panels: Sequence[Panel], fmt: Format, *, width: float = 6.4, dpi: int = 100) -> bytes:
    """The panels side by side as one picture in fmt."""
    count = max(1, len(panels))
    fig = Figure(figsize=(width * count, 4.0), dpi=dpi, layout="constrained")
    for p_index, panel in enumerate(panels):
        ax = fig.add_subplot(1, count, p_index + 1)
        ax.set_title(panel.title, fontsize=11)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for s_index, series in enumerate(panel.series):
            gid = f"series-{p_index}-{s_index}"
            if series.style == "points":
                (line,) = ax.plot(series.x, series.y, "o", markersize=4, label=series.label)
            else:
                drawstyle = "steps-post" if series.style == "step" else "default"
                marker = "." if len(series.x) <= 50 else None
                (line,) = ax.plot(
                    series.x, series.y, drawstyle=drawstyle, marker=marker, label=series.label
                )
            line.set_gid(gid)
        if not panel.series:
            ax.text(0.5, 0.5, "nothing to draw", ha="center", va="center", transform=ax.transAxes)
        elif len(panel.series) > 1 or panel.series[0].label:
            ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()
