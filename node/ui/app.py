"""The web UI's FastAPI app: read-only pages over the node's store and home.

Pages: Catalog (/), Record (/record/ID), Compare (/compare?id=..&id=..), Studies (/studies,
/study?name=..), Federations (/federations, /federation/NAME/RUN). HTML is rendered on the
server (Jinja2) and every chart is an inline SVG drawn by matplotlib, so a page loads nothing
but itself and one stylesheet served here: no script, no font, no other host.

A token, when set (any listen address but loopback), is required on every request: as
`?token=` once (it is then kept in a cookie) or as `Authorization: Bearer`.

Must never write to the store, show a peer's record with this node's private details, or
answer a request without the token when one is set.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from gridpoint.errors import GridpointError
from gridpoint.node.home import NodeHome
from gridpoint.node.record_views import SignerNames, find_record, format_value, record_view
from gridpoint.node.store.base import CatalogStore, RunDetail
from gridpoint.node.study_reports import load_reports
from gridpoint.node.ui import federations, studies
from gridpoint.node.ui.charts import Panel, Series, best_so_far, spans_decades
from gridpoint.node.ui.plots import render
from gridpoint.node.ui.views import (
    BASE_COLUMNS,
    MAX_COMPARED,
    catalog_page,
    curve_panels,
    record_label,
)

__all__ = ["TOKEN_COOKIE", "create_app"]

TOKEN_COOKIE = "gridpoint_ui_token"
_HERE = Path(__file__).parent
# Names for the column chooser are read at most this often (a DISTINCT over every record).
_NAMES_TTL_S = 60.0


@dataclass
class _Names:
    metrics: list[str]
    params: list[str]
    at: float


def _trial_error(detail: RunDetail | str) -> str:
    """A failed trial's error text from its private detail ("" for a trial with none)."""
    return detail.error if isinstance(detail, RunDetail) else ""


def _svg(panel: Panel) -> str:
    text = render([panel], "svg").decode()
    return text[text.index("<svg") :]


def create_app(
    home: NodeHome, store: CatalogStore, *, db_url: str, token: str | None = None
) -> FastAPI:
    """The app over this home and its open store (the caller closes the store)."""
    app = FastAPI(title="gridpoint", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.filters["num"] = format_value
    templates.env.filters["trial_error"] = _trial_error
    templates.env.globals["node_name"] = home.config.name
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    optuna_url = studies.optuna_url(home.studies_url(db_url))
    names_lock = threading.Lock()
    cached: list[_Names] = []

    def known_names() -> _Names:
        with names_lock:
            if not cached or time.monotonic() - cached[0].at > _NAMES_TTL_S:
                cached[:] = [
                    _Names(
                        sorted(store.known_names("metrics", 500)),
                        sorted(store.known_names("params", 500)),
                        time.monotonic(),
                    )
                ]
            return cached[0]

    if token is not None:

        @app.middleware("http")
        async def require_token(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            given = (
                request.query_params.get("token")
                or request.cookies.get(TOKEN_COOKIE)
                or request.headers.get("authorization", "").removeprefix("Bearer ")
            )
            if not secrets.compare_digest(given.encode(), token.encode()):
                return PlainTextResponse(
                    "this UI needs its token: open the address `gridpoint ui` printed", 401
                )
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def catalog(
        request: Request,
        q: str = "",
        order: str = "",
        col: list[str] = Query(default=[]),  # noqa: B008 (FastAPI's way to declare a list)
        page_number: int = Query(default=1, alias="page", ge=1, le=1_000_000),
        size: int = Query(default=50, ge=1, le=500),
    ) -> HTMLResponse:
        names = SignerNames(home, store)
        result = catalog_page(
            home,
            store,
            filter_text=q,
            order_text=order,
            columns=col,
            page=page_number,
            page_size=size,
            names=names,
        )
        known = known_names()

        def link(**changes: Any) -> str:
            query: dict[str, Any] = {"q": q, "order": order, "col": col, "page": page_number}
            query.update(changes)
            return "/?" + urlencode({k: v for k, v in query.items() if v}, doseq=True)

        headings = dict(BASE_COLUMNS)
        sorts = {}
        for key in result.columns:
            descending = order.strip() != f"{key} desc"
            sorts[key] = link(order=f"{key} {'desc' if descending else 'asc'}", page=1)
        return page(
            request,
            "catalog.html",
            status=400 if result.error else 200,
            result=result,
            q=q,
            order=order,
            chosen=col,
            headings=headings,
            sorts=sorts,
            prev_link=link(page=page_number - 1) if page_number > 1 else None,
            next_link=link(page=page_number + 1) if result.has_next else None,
            total=store.count_records(),
            metric_names=known.metrics,
            param_names=known.params,
        )

    @app.get("/record/{record_id}", response_class=HTMLResponse)
    def record(request: Request, record_id: str) -> HTMLResponse:
        names = SignerNames(home, store)
        try:
            view = record_view(home, store, record_id, names)
        except GridpointError as exc:
            return page(request, "error.html", 404, message=str(exc))
        charts = [_svg(p) for p in curve_panels([("", view.stored.record)])]
        return page(request, "record.html", view=view, charts=charts)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(
        request: Request,
        record_ids: list[str] = Query(default=[], alias="id"),  # noqa: B008
        metric: str = "",
    ) -> HTMLResponse:
        names = SignerNames(home, store)
        if not 1 <= len(record_ids) <= MAX_COMPARED:
            return page(
                request, "error.html", 400, message=f"pick 1 to {MAX_COMPARED} records to compare"
            )
        try:
            found = [find_record(store, rid) for rid in record_ids]
        except GridpointError as exc:
            return page(request, "error.html", 404, message=str(exc))
        labelled = [(record_label(s, names), s.record) for s in found]
        panels = curve_panels(labelled, metric=metric or None)
        return page(
            request,
            "compare.html",
            records=[(s, names.name(s.signer_id)) for s in found],
            charts=[_svg(p) for p in panels],
        )

    @app.get("/studies", response_class=HTMLResponse)
    def study_list(request: Request) -> HTMLResponse:
        return page(request, "studies.html", names=studies.list_studies(optuna_url))

    @app.get("/study", response_class=HTMLResponse)
    def study(request: Request, name: str) -> HTMLResponse:
        view = studies.read_study(optuna_url, name)
        if view is None:
            return page(request, "error.html", 404, message="no study of that name on this node")
        done = view.complete
        numbers = [float(t.number) for t in done]
        values = [t.value for t in done if t.value is not None]
        charts = [
            _svg(
                Panel(
                    "trials and best so far",
                    "trial",
                    "objective",
                    [
                        Series("trial", numbers, values, "points"),
                        Series("best so far", numbers, best_so_far(values, view.maximize), "step"),
                    ],
                )
            )
        ]
        for param in sorted({p for t in done for p in t.params}):
            pairs = [
                (float(v), t.value)
                for t in done
                if isinstance(v := t.params.get(param), float) and t.value is not None
            ]
            if pairs:
                charts.append(
                    _svg(
                        Panel(
                            f"{param} vs objective",
                            param,
                            "objective",
                            [Series("", [p[0] for p in pairs], [p[1] for p in pairs], "points")],
                            log_x=spans_decades([p[0] for p in pairs]),
                        )
                    )
                )
        private = [
            r
            for r in store.list_private_runs(name)
            if r.trial_number in {t.number for t in view.trials}
        ]
        return page(
            request,
            "study.html",
            view=view,
            charts=charts,
            reports=load_reports(home.path, name),
            private=private,
        )

    @app.get("/federations", response_class=HTMLResponse)
    def federation_list(request: Request) -> HTMLResponse:
        return page(request, "federations.html", runs=federations.list_runs(home.path))

    @app.get("/federation/{federation}/{run}", response_class=HTMLResponse)
    def federation(request: Request, federation: str, run: str) -> HTMLResponse:
        view = federations.read_run(home.path, federation, run)
        if view is None:
            return page(request, "error.html", 404, message="no such federation run on this node")
        metric_names = sorted({m for r in view.rounds for m in r.metrics})
        charts = [
            _svg(
                Panel(
                    name,
                    "round",
                    name,
                    [
                        Series(
                            name,
                            [float(r.number) for r in view.rounds if name in r.metrics],
                            [r.metrics[name] for r in view.rounds if name in r.metrics],
                        )
                    ],
                )
            )
            for name in metric_names
        ]
        names = SignerNames(home, store)
        return page(request, "federation.html", view=view, charts=charts, names=names)

    return app
