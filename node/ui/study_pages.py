"""The pages of this node's own studies: Studies (/studies), a Study (/study?name=..: history
overlaid with its cold or warm counterpart, parallel coordinates, importances, slices, a
contour, every learning curve, the trials), a Trial (/study/trial?name=..&number=..) and the
Warm start of a study (/study/warm-start?name=..). Importances come from
/study/importance?name=.. (JSON), computed by Optuna in a child process (importance.py).

A study's "counterpart" is the study the history overlays by default: when one of the two
was warm-started (it has a warm-start report) and the other not, the one whose name shares
the longest beginning with this one's (`beta-sentiment` and `beta-sentiment-cold`); the
page's chooser overlays any other study.

Must never show a study to anyone but this node's UI (study names are private), nor fail a
page on a malformed trial: it is listed with what is wrong and left out of the charts.
"""

from __future__ import annotations

import functools
import os
from urllib.parse import quote, quote_plus, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from gridpoint.node.store.base import PrivateRun
from gridpoint.node.study_reports import load_reports
from gridpoint.node.ui.context import UiContext
from gridpoint.node.ui.figures import Chart, axis, integer_axis, layout
from gridpoint.node.ui.studies import StudyView, list_studies, read_study
from gridpoint.node.ui.study_figures import (
    contour_chart,
    curves_chart,
    drawn,
    history_chart,
    importance_chart,
    parallel_chart,
    slice_chart,
)
from gridpoint.node.ui.warm_start_view import warm_start_runs

__all__ = ["counterpart", "register", "trial_link"]


def trial_link(view: StudyView, number: int) -> str:
    """The page of a trial (a chart asks once per point: the quoted name is kept)."""
    return f"/study/trial?name={_quoted(view.name)}&number={number}"


@functools.lru_cache(maxsize=64)
def _quoted(name: str) -> str:
    return quote_plus(name)


def counterpart(name: str, names: list[str], warm: set[str]) -> str | None:
    """The study to overlay by default: of the other kind (warm or cold), sharing the
    longest beginning of its name with this one (at least half of the shorter name)."""
    best: tuple[int, str] | None = None
    for other in names:
        if other == name or (other in warm) == (name in warm):
            continue
        shared = len(os.path.commonprefix([name, other]))
        if shared * 2 >= min(len(name), len(other)) and (best is None or shared > best[0]):
            best = (shared, other)
    return None if best is None else best[1]


def _private_runs(ui: UiContext, name: str) -> dict[int, PrivateRun]:
    return {r.trial_number: r for r in ui.store.list_private_runs(name)}


def _error(run: PrivateRun | None) -> str:
    """A failed trial's error from its private detail ("" for a trial with none)."""
    return run.detail.error if run is not None else ""


def register(app: FastAPI, ui: UiContext) -> None:
    """Adds the study pages to app."""

    def warm_started(names: list[str]) -> set[str]:
        return {n for n in names if load_reports(ui.home.path, n)}

    @app.get("/studies", response_class=HTMLResponse)
    def study_list(request: Request) -> HTMLResponse:
        names = list_studies(ui.optuna_url)
        return ui.page(request, "studies.html", names=names, warm=warm_started(names))

    @app.get("/study", response_class=HTMLResponse)
    def study(
        request: Request, name: str, vs: str | None = None, cx: str = "", cy: str = ""
    ) -> HTMLResponse:
        view = read_study(ui.optuna_url, name)
        if view is None:
            return ui.error(request, 404, "no study of that name on this node")
        names = list_studies(ui.optuna_url)
        warm = warm_started(names)
        other_name = counterpart(name, names, warm) if vs is None else (vs or None)
        other = read_study(ui.optuna_url, other_name) if other_name not in (None, name) else None
        label = "warm-started" if name in warm else "cold"
        overlay = [(f"{name} ({label})", view)]
        if other is not None:
            overlay.append(
                (f"{other.name} ({'warm-started' if other.name in warm else 'cold'})", other)
            )
        charts: list[Chart] = [history_chart(overlay, trial_link)]
        params = list(view.spaces)
        if drawn(view) and params:
            charts += [parallel_chart(view), slice_chart(view, trial_link)]
        x_param = cx if cx in view.spaces else (params[0] if params else "")
        y_param = cy if cy in view.spaces else (params[1] if len(params) > 1 else "")
        if x_param and y_param and x_param != y_param and len(drawn(view)) >= 3:
            charts.append(contour_chart(view, x_param, y_param, trial_link))
        if any(t.curve for t in view.trials):
            charts.append(curves_chart(view, trial_link))
        private = _private_runs(ui, name)
        models = {m.record_id: m for m in ui.models(group=name) if m.record_id}
        return ui.page(
            request,
            "study.html",
            view=view,
            charts=charts,
            warm=name in warm,
            studies=[n for n in names if n != name],
            overlaid=other.name if other is not None else "",
            params=params,
            cx=x_param,
            cy=y_param,
            records={n: r.record_id for n, r in private.items() if r.record_id},
            errors={n: _error(r) for n, r in private.items()},
            models=models,
            importance_src="/study/importance?" + urlencode({"name": name}),
            trial_link=lambda number: trial_link(view, number),
        )

    @app.get("/study/importance")
    def importance(name: str) -> JSONResponse:
        view = read_study(ui.optuna_url, name)
        if view is None:
            return JSONResponse({"error": "no study of that name on this node"}, 404)
        return JSONResponse(importance_chart(ui.importances.get(view)))

    @app.get("/study/trial", response_class=HTMLResponse)
    def trial(request: Request, name: str, number: int) -> HTMLResponse:
        view = read_study(ui.optuna_url, name)
        found = view.trial(number) if view is not None else None
        if view is None or found is None:
            return ui.error(request, 404, "no such trial on this node")
        run = _private_runs(ui, name).get(number)
        record_id = run.record_id if run is not None else None
        charts = []
        if found.curve:
            steps = [step for step, _ in found.curve]
            charts.append(
                Chart(
                    "trial-curve",
                    {
                        "data": [
                            {
                                "type": "scatter",
                                "mode": "lines+markers" if len(steps) <= 50 else "lines",
                                "x": steps,
                                "y": [value for _, value in found.curve],
                                "line": {"simplify": False},
                                "name": f"trial {number}",
                            }
                        ],
                        "layout": layout(
                            f"Trial {number}: intermediate values",
                            integer_axis("step", steps),
                            axis("objective"),
                        ),
                    },
                )
            )
        return ui.page(
            request,
            "trial.html",
            view=view,
            trial=found,
            charts=charts,
            record_id=record_id,
            error=_error(run),
            models=ui.models_of(record_id) if record_id else [],
            study_link="/study?name=" + quote(name, safe=""),
        )

    @app.get("/study/warm-start", response_class=HTMLResponse)
    def warm_start(request: Request, name: str) -> HTMLResponse:
        view = read_study(ui.optuna_url, name)
        if view is None:
            return ui.error(request, 404, "no study of that name on this node")
        runs, chart = warm_start_runs(ui, view, load_reports(ui.home.path, name))
        return ui.page(
            request,
            "warm_start.html",
            view=view,
            runs=runs,
            charts=[chart] if chart is not None else [],
            study_link="/study?name=" + quote(name, safe=""),
        )
