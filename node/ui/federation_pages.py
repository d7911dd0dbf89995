"""The federations this node hosted: Federations (/federations) and a run
(/federation/NAME/RUN: one chart per metric with the global model's value each round and
each member's own, the members, the rounds with what was refused and why).

Must never read outside the home's fed/ folder (federations.py checks the names).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from gridpoint.node.record_views import SignerNames
from gridpoint.node.ui import federations
from gridpoint.node.ui.charts import Panel, Series
from gridpoint.node.ui.context import UiContext
from gridpoint.node.ui.federations import FederationRun
from gridpoint.node.ui.figures import panel_chart

__all__ = ["register", "round_panels"]

GLOBAL = "global model (aggregated)"


def round_panels(view: FederationRun, names: SignerNames) -> list[Panel]:
    """One panel per metric: the aggregated value each round, and each member's."""
    metrics = sorted(
        {m for r in view.rounds for m in r.metrics}
        | {m for r in view.rounds for values in r.member_metrics.values() for m in values}
    )
    members = sorted({node for r in view.rounds for node in r.member_metrics}, key=names.name)
    panels = []
    for metric in metrics:
        panel = Panel(metric, "round", metric)
        rounds = [r for r in view.rounds if metric in r.metrics]
        if rounds:
            panel.series.append(
                Series(GLOBAL, [r.number for r in rounds], [r.metrics[metric] for r in rounds])
            )
        for node in members:
            own = [r for r in view.rounds if metric in r.member_metrics.get(node, {})]
            if own:
                panel.series.append(
                    Series(
                        names.name(node),
                        [r.number for r in own],
                        [r.member_metrics[node][metric] for r in own],
                        group=names.name(node),
                    )
                )
        panels.append(panel)
    return panels


def register(app: FastAPI, ui: UiContext) -> None:
    """Adds the federation pages to app."""

    @app.get("/federations", response_class=HTMLResponse)
    def federation_list(request: Request) -> HTMLResponse:
        return ui.page(request, "federations.html", runs=federations.list_runs(ui.home.path))

    @app.get("/federation/{federation}/{run}", response_class=HTMLResponse)
    def federation(request: Request, federation: str, run: str) -> HTMLResponse:
        view = federations.read_run(ui.home.path, federation, run)
        if view is None:
            return ui.error(request, 404, "no such federation run on this node")
        names = ui.names()
        charts = [panel_chart(f"round-{i}", p) for i, p in enumerate(round_panels(view, names))]
        return ui.page(request, "federation.html", view=view, charts=charts, names=names)
