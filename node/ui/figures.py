"""The web UI's charts as plotly.js figures (their JSON form), drawn in the browser by the
plotly.js the node serves (static/charts.js draws them: hover, zoom, click a point to open it).

Figures are built as plain data, not through plotly's Python graph objects: validating a
figure of a few hundred curves that way costs a page hundreds of milliseconds (the tests
validate every figure with plotly's own validators instead). Every text a figure shows
(names from peers, study files, metric and parameter names) is escaped: plotly.js reads a
few HTML tags in labels, and `$...$` would be typeset if MathJax were ever present (the
pages also switch typesetting off).

Axes that count trials, rounds or steps get whole-number ticks (charts.js keeps them whole
when zooming). Non-finite numbers become gaps.

Must never put anything in a figure its caller did not hand it (the callers decide what is
private), nor emit JSON that could end the <script> element holding it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridpoint.node.ui.charts import Panel, Series

__all__ = [
    "COLORS",
    "Chart",
    "axis",
    "color_of",
    "esc",
    "integer_axis",
    "layout",
    "panel_chart",
]

#: plotly's own default colour sequence.
COLORS = (
    "#636efa",
    "#EF553B",
    "#00cc96",
    "#ab63fa",
    "#FFA15A",
    "#19d3f3",
    "#FF6692",
    "#B6E880",
    "#FF97FF",
    "#FECB52",
)
# What would end a <script> element or an HTML comment, written as JSON escapes instead.
_SCRIPT_UNSAFE = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


@dataclass(frozen=True)
class Chart:
    """One chart of a page: its name (the element is #chart-NAME) and plotly.js figure."""

    name: str
    figure: dict[str, Any]

    def json(self) -> str:
        """The figure as JSON safe inside a <script type="application/json"> element."""
        try:
            text = json.dumps(self.figure, separators=(",", ":"), allow_nan=False)
        except ValueError:  # a NaN or an infinity somewhere: the slow walk replaces them
            text = json.dumps(_finite(self.figure), separators=(",", ":"))
        for unsafe, escaped in _SCRIPT_UNSAFE:
            text = text.replace(unsafe, escaped)
        return text


def esc(text: object) -> str:
    """Text as plotly.js shows it literally (its labels read a few HTML tags and entities)."""
    return html.escape(str(text), quote=False)


def color_of(index: int) -> str:
    return COLORS[index % len(COLORS)]


def axis(title: str, **options: Any) -> dict[str, Any]:
    return {"title": {"text": esc(title)}, "automargin": True, **options}


def integer_axis(title: str, values: Sequence[float] = ()) -> dict[str, Any]:
    """An axis of trials, rounds or steps: ticks on whole numbers at a readable spacing."""
    finite = [v for v in values if math.isfinite(v)]
    span = (max(finite) - min(finite)) if finite else 1.0
    return axis(title, tickmode="linear", tick0=0, dtick=_whole_step(span), tickformat="d")


def _whole_step(span: float) -> int:
    """A tick spacing of 1, 2 or 5 times a power of ten giving at most about 10 ticks."""
    target = max(span / 10, 1.0)
    power = 10 ** math.floor(math.log10(target))
    return int(next(f * power for f in (1, 2, 5, 10) if f * power >= target))


def layout(title: str, x: dict[str, Any], y: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A chart's layout: title, axes, the legend below, integer axes named for charts.js."""
    integer = [name for name, ax in (("xaxis", x), ("yaxis", y)) if ax.get("tickformat") == "d"]
    return {
        "title": {"text": esc(title), "font": {"size": 15}},
        "xaxis": x,
        "yaxis": y,
        "hovermode": "closest",
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
        "meta": {"integer_axes": integer},
        "height": 420,
        **extra,
    }


def _series_trace(series: Series, color: str) -> dict[str, Any]:
    """One series as a scatter trace: every point kept (no line simplification)."""
    trace: dict[str, Any] = {
        "type": "scatter",
        "x": list(series.x),
        "y": list(series.y),
        "name": esc(series.label),
        "showlegend": bool(series.label),
        "line": {"color": color, "simplify": False},
        "marker": {"color": color, "size": 7},
    }
    if series.style == "points":
        trace["mode"] = "markers"
    else:
        trace["mode"] = "lines+markers" if len(series.x) <= 50 else "lines"
        if series.style == "step":
            trace["line"]["shape"] = "hv"
    if series.group:
        trace["legendgroup"] = esc(series.group)
    if series.links:
        trace["customdata"] = list(series.links)
    return trace


def panel_chart(name: str, panel: Panel) -> Chart:
    """A panel of curves; series of one group (an organization) share a colour and differ
    by dash."""
    keys: list[str] = []
    traces = []
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for index, series in enumerate(panel.series):
        key = series.group or series.label or str(index)
        if key not in keys:
            keys.append(key)
        trace = _series_trace(series, color_of(keys.index(key)))
        if series.group:
            rank = sum(1 for s in panel.series[:index] if s.group == series.group)
            trace["line"]["dash"] = dashes[rank % len(dashes)]
        traces.append(trace)
    xs = [x for s in panel.series for x in s.x]
    return Chart(
        name,
        {
            "data": traces,
            "layout": layout(panel.title, integer_axis(panel.xlabel, xs), axis(panel.ylabel)),
        },
    )


def _finite(value: Any) -> Any:
    """The value with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
