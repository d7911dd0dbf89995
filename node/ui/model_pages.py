"""The models this node holds: Models (/models) and a Model (/model/ID: its lineage as a
graph, its files and their SHA-256 digests, who signed it, who may fetch it from this node,
who holds a copy as far as this node's store knows).

"Holds a copy": this node (the model is here) and its author (it signed the manifest). The
store does not record which readers fetched it: readers are shown as allowed, never as
holding it.

Must never show a model's folder path (it names the home), nor change what a model's
readers are.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from gridpoint.errors import GridpointError
from gridpoint.node.ui.context import UiContext
from gridpoint.node.ui.lineage import lineage_chart, model_lineage

__all__ = ["register"]


def register(app: FastAPI, ui: UiContext) -> None:
    """Adds the model pages to app."""

    @app.get("/models", response_class=HTMLResponse)
    def model_list(request: Request) -> HTMLResponse:
        return ui.page(request, "models.html", models=ui.models(), names=ui.names())

    @app.get("/model/{model_id}", response_class=HTMLResponse)
    def model(request: Request, model_id: str) -> HTMLResponse:
        try:
            found = ui.model(model_id)
        except GridpointError as exc:
            return ui.error(request, 404, str(exc))
        names = ui.names()
        graph = model_lineage(ui.store, names, ui.models_of, found)
        holders = [("this node", "the model is held here")]
        if found.author != names.own_id:
            holders.append((names.name(found.author), "its author (signed its manifest)"))
        return ui.page(
            request,
            "model.html",
            model=found,
            names=names,
            charts=[lineage_chart(graph)],
            holders=holders,
            own=found.author == names.own_id,
        )
