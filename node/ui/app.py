"""The web UI's FastAPI app: read-only pages over the node's store and home.

Pages: Catalog (/), Record (/record/ID), Compare (/compare?id=..&id=..) in catalog_pages.py;
Studies (/studies, /study?name=.., /study/trial, /study/warm-start) in study_pages.py; Models
(/models, /model/ID) in model_pages.py; Federations (/federations, /federation/NAME/RUN) in
federation_pages.py. HTML is rendered on the server (Jinja2); charts are plotly.js figures
drawn in the browser by the plotly.js this node serves (/assets/), with static/charts.js.
Every error, an unknown address included, is an HTML page with its status.

Who may ask (loopback host names, or the token) is guard.py's.

Must never write to the store, show a peer's record with this node's private details, or
load anything from another host.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from gridpoint.node.home import NodeHome
from gridpoint.node.record_views import format_value
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.ui import (
    catalog_pages,
    federation_pages,
    model_pages,
    studies,
    study_pages,
)
from gridpoint.node.ui.context import PLOTLY_PATH, UiContext
from gridpoint.node.ui.guard import add_guard
from gridpoint.node.ui.importance import ImportanceCache

__all__ = ["create_app"]

_HERE = Path(__file__).parent


def create_app(
    home: NodeHome, store: CatalogStore, *, db_url: str, token: str | None = None
) -> FastAPI:
    """The app over this home and its open store (the caller closes the store)."""
    app = FastAPI(title="gridpoint", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.filters["num"] = format_value
    templates.env.globals["node_name"] = home.config.name
    templates.env.globals["plotly_src"] = PLOTLY_PATH
    ui = UiContext(
        home,
        store,
        templates,
        studies.optuna_url(home.studies_url(db_url)),
        ImportanceCache(),
    )
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    plotly_js = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))

    @app.get(PLOTLY_PATH, include_in_schema=False)
    def plotly() -> FileResponse:
        return FileResponse(
            plotly_js,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> HTMLResponse:
        message = "no such page on this node" if exc.status_code == 404 else str(exc.detail)
        return ui.error(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, exc: RequestValidationError) -> HTMLResponse:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in exc.errors()[:5]
        )
        return ui.error(request, 400, f"this page cannot take that address ({wrong})")

    catalog_pages.register(app, ui)
    study_pages.register(app, ui)
    model_pages.register(app, ui)
    federation_pages.register(app, ui)
    add_guard(app, token)
    return app
