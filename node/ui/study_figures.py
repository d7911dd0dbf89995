"""The Study page's charts, as plotly.js figures: optimization history (trials and best so far,
several studies overlaid), parallel coordinates, slices, a contour of two parameters, every
trial's learning curve, and the importances Optuna computed (importance.py).

Only complete trials whose rows read are drawn (a malformed one is listed on the page, not
drawn); a point opens its trial's page (links given by the caller).

Must never draw a parameter or trial the study does not hold, nor read anything itself:
the caller hands over the study as read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from gridpoint.node.ui.charts import best_so_far
from gridpoint.node.ui.figures import (
    Chart,
    axis,
    color_of,
    esc,
    integer_axis,
    layout,
)
from gridpoint.node.ui.importance import Importances
from gridpoint.node.ui.studies import ParamSpace, StudyTrial, StudyView

__all__ = [
    "contour_chart",
    "curves_chart",
    "drawn",
    "history_chart",
    "importance_chart",
    "parallel_chart",
    "slice_chart",
]

TrialLink = Callable[[StudyView, int], str]
#: Most trials' curves named in the legend (beyond it, hover still names each).
MAX_LEGEND = 20
#: Slices per row.
SLICE_COLUMNS = 3
_STATE_COLORS = {"COMPLETE": "#636efa", "PRUNED": "#FFA15A", "FAIL": "#EF553B"}


def drawn(view: StudyView) -> list[StudyTrial]:
    """The trials a chart draws: complete, with a value, every row read."""
    return [t for t in view.complete if not t.problem]


def history_chart(studies: Sequence[tuple[str, StudyView]], link: TrialLink) -> Chart:
    """Each study's trials (points) and best value so far (steps), overlaid by trial number."""
    traces: list[dict[str, Any]] = []
    numbers: list[float] = []
    for index, (label, view) in enumerate(studies):
        trials = drawn(view)
        x = [t.number for t in trials]
        y = [t.value for t in trials if t.value is not None]
        numbers += x
        color = color_of(index)
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": esc(f"{label}: trials"),
                "legendgroup": esc(label),
                "x": x,
                "y": y,
                "customdata": [link(view, t.number) for t in trials],
                "hovertemplate": "trial %{x}<br>value %{y}<extra>" + esc(label) + "</extra>",
                "marker": {"color": color, "size": 8, "opacity": 0.75},
            }
        )
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": esc(f"{label}: best so far"),
                "legendgroup": esc(label),
                "x": x,
                "y": best_so_far(y, view.maximize),
                "line": {"color": color, "shape": "hv", "simplify": False},
                "hoverinfo": "skip",
            }
        )
    return Chart(
        "history",
        {
            "data": traces,
            "layout": layout(
                "Optimization history", integer_axis("trial", numbers), axis("objective")
            ),
        },
    )


def _dimension(space: ParamSpace, values: list[float | str]) -> dict[str, Any]:
    """One parallel-coordinates axis: choices by position, a log parameter by its log10."""
    if space.kind == "categorical":
        choices = list(space.choices)
        return {
            "label": esc(space.name),
            "values": [choices.index(str(v)) for v in values],
            "tickvals": list(range(len(choices))),
            "ticktext": [esc(c) for c in choices],
        }
    numbers = [float(v) for v in values]
    if space.log and min(numbers) > 0:
        logs = [math.log10(v) for v in numbers]
        ticks = list(range(math.floor(min(logs)), math.ceil(max(logs)) + 1))
        return {
            "label": esc(space.name),
            "values": logs,
            "tickvals": ticks,
            "ticktext": [f"1e{t}" for t in ticks],
        }
    return {"label": esc(space.name), "values": numbers}


def parallel_chart(view: StudyView) -> Chart:
    """Objective and every parameter, one line per trial that has them all."""
    names = list(view.spaces)
    trials = [t for t in drawn(view) if all(n in t.params for n in names)]
    values = [t.value for t in trials if t.value is not None]
    dimensions = [{"label": "objective", "values": values}]
    dimensions += [_dimension(view.spaces[n], [t.params[n] for t in trials]) for n in names]
    trace = {
        "type": "parcoords",
        "dimensions": dimensions if trials else [],
        "line": {
            "color": values,
            "colorscale": "Viridis",
            "reversescale": not view.maximize,
            "showscale": True,
            "colorbar": {"title": {"text": "objective"}},
        },
    }
    return Chart(
        "parallel",
        {
            "data": [trace],
            "layout": {
                "title": {"text": "Parallel coordinates", "font": {"size": 15}},
                "margin": {"l": 70, "r": 70, "t": 90, "b": 30},
                "height": 420,
            },
        },
    )


def _param_axis(space: ParamSpace, **options: Any) -> dict[str, Any]:
    if space.kind == "categorical":
        return axis(
            space.name,
            type="category",
            categoryorder="array",
            categoryarray=[esc(c) for c in space.choices],
            **options,
        )
    if space.log:
        return axis(space.name, type="log", exponentformat="e", dtick="D2", **options)
    return axis(space.name, **options)


def _param_values(space: ParamSpace, trials: list[StudyTrial]) -> list[Any]:
    return [
        esc(t.params[space.name]) if space.kind == "categorical" else t.params[space.name]
        for t in trials
    ]


def slice_chart(view: StudyView, link: TrialLink) -> Chart:
    """The objective against each parameter, one panel each; colour tells the trial number."""
    names = list(view.spaces)
    columns = max(1, min(SLICE_COLUMNS, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    traces: list[dict[str, Any]] = []
    axes: dict[str, Any] = {}
    gap = 0.08
    width = (1 - gap * (columns - 1)) / columns
    height = (1 - 0.15 * (rows - 1)) / rows
    for index, name in enumerate(names):
        space = view.spaces[name]
        trials = [t for t in drawn(view) if name in t.params]
        suffix = "" if index == 0 else str(index + 1)
        col, row = index % columns, index // columns
        left = col * (width + gap)
        top = 1 - row * (height + 0.15)
        axes[f"xaxis{suffix}"] = _param_axis(
            space, domain=[left, left + width], anchor=f"y{suffix}"
        )
        axes[f"yaxis{suffix}"] = axis(
            "objective" if col == 0 else "", domain=[top - height, top], anchor=f"x{suffix}"
        )
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": esc(name),
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
                "x": _param_values(space, trials),
                "y": [t.value for t in trials],
                "customdata": [link(view, t.number) for t in trials],
                "text": [f"trial {t.number}" for t in trials],
                "hovertemplate": "%{text}<br>%{x}<br>value %{y}<extra></extra>",
                "showlegend": False,
                "marker": {
                    "color": [t.number for t in trials],
                    "colorscale": "Blues",
                    "size": 8,
                    "line": {"width": 0.5, "color": "#333"},
                    "showscale": index == 0,
                    "colorbar": {"title": {"text": "trial"}},
                },
            }
        )
    return Chart(
        "slice",
        {
            "data": traces,
            "layout": {
                "title": {"text": "Slices: the objective against each parameter"},
                "hovermode": "closest",
                "height": 300 * rows + 80,
                "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
                **axes,
            },
        },
    )


def contour_chart(view: StudyView, x_name: str, y_name: str, link: TrialLink) -> Chart:
    """The objective over two parameters (plotly.js fills the grid between the trials)."""
    x_space, y_space = view.spaces[x_name], view.spaces[y_name]
    trials = [t for t in drawn(view) if x_name in t.params and y_name in t.params]
    x, y = _param_values(x_space, trials), _param_values(y_space, trials)
    z = [t.value for t in trials]
    traces = [
        {
            "type": "contour",
            "x": x,
            "y": y,
            "z": z,
            "connectgaps": True,
            "colorscale": "Viridis",
            "reversescale": not view.maximize,
            "contours": {"coloring": "heatmap"},
            "colorbar": {"title": {"text": "objective"}},
            "hoverinfo": "skip",
            "line": {"smoothing": 1.0},
        },
        {
            "type": "scatter",
            "mode": "markers",
            "x": x,
            "y": y,
            "customdata": [link(view, t.number) for t in trials],
            "text": [f"trial {t.number}: {t.value:.4g}" for t in trials if t.value is not None],
            "hovertemplate": "%{text}<extra></extra>",
            "showlegend": False,
            "marker": {"color": "#fff", "size": 7, "line": {"width": 1, "color": "#222"}},
        },
    ]
    return Chart(
        "contour",
        {
            "data": traces,
            "layout": layout(
                f"Contour: {x_name} and {y_name}", _param_axis(x_space), _param_axis(y_space)
            ),
        },
    )


def curves_chart(view: StudyView, link: TrialLink) -> Chart:
    """Every trial's intermediate values (its learning curve), one line each."""
    trials = [t for t in view.trials if t.curve]
    traces = []
    steps: list[float] = []
    for t in trials:
        x = [step for step, _ in t.curve]
        steps += x
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if len(x) <= 50 else "lines",
                "name": f"trial {t.number} ({t.state.lower()})",
                "x": x,
                "y": [value for _, value in t.curve],
                "customdata": [link(view, t.number)] * len(x),
                "hovertemplate": f"trial {t.number}<br>step %{{x}}<br>%{{y}}<extra></extra>",
                "showlegend": len(trials) <= MAX_LEGEND,
                "line": {"color": _STATE_COLORS.get(t.state, "#999"), "simplify": False},
                "marker": {"size": 4},
                "opacity": 0.8,
            }
        )
    return Chart(
        "curves",
        {
            "data": traces,
            "layout": layout(
                "Learning curves (intermediate values; blue complete, orange pruned, red failed)",
                integer_axis("step", steps),
                axis("objective"),
            ),
        },
    )


def importance_chart(found: Importances) -> dict[str, Any]:
    """The importances as a horizontal bar chart (a figure, or an error to show instead)."""
    if found.error:
        return {"error": f"hyperparameter importance: {found.error}"}
    names = list(reversed(found.values))
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [found.values[n] for n in names],
                "y": [esc(n) for n in names],
                "hovertemplate": "%{y}: %{x:.3f}<extra></extra>",
                "marker": {"color": "#636efa"},
            }
        ],
        "layout": layout(
            f"Hyperparameter importance (Optuna, {found.evaluator})",
            axis("share of the objective's variation", range=[0, 1]),
            axis("", type="category"),
            height=max(220, 60 + 40 * len(names)),
        ),
    }
