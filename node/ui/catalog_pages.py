"""The catalog's pages: the Catalog (/: filter, sortable columns, pages), a Record
(/record/ID) and Compare (/compare?id=..: several records' curves on one chart, coloured by
the organization that signed each).

Must never show a private detail on a record another node signed, nor read more than a
page of records for one answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from gridpoint.errors import GridpointError
from gridpoint.node.control.ledger import copies_of
from gridpoint.node.record_views import (
    SignerNames,
    find_record,
    introduction_text,
    record_view,
)
from gridpoint.node.ui.charts import Panel, Series
from gridpoint.node.ui.context import UiContext
from gridpoint.node.ui.figures import panel_chart
from gridpoint.node.ui.views import BASE_COLUMNS, MAX_COMPARED, catalog_page, curve_panels
from gridpoint.schema import RunRecord

__all__ = ["compare_panels", "register"]

# Names for the column chooser are read at most this often (a DISTINCT over every record).
_NAMES_TTL_S = 60.0


@dataclass
class _Names:
    metrics: list[str]
    params: list[str]
    at: float


def compare_panels(
    records: list[tuple[str, str, RunRecord]], metric: str | None = None
) -> list[Panel]:
    """One panel per curve metric (or only `metric`) over (organization, record id, record):
    a series per record, an organization's records side by side in one colour; a point
    opens its record."""
    orgs = list(dict.fromkeys(org for org, _, _ in records))
    ordered = sorted(records, key=lambda r: orgs.index(r[0]))
    metrics = list(dict.fromkeys(p.metric for _, _, record in ordered for p in record.curve))
    panels = []
    for name in metrics if metric is None else [m for m in metrics if m == metric]:
        panel = Panel(name, "step", name)
        for org, record_id, record in ordered:
            points = sorted((p.step, p.value) for p in record.curve if p.metric == name)
            if points:
                panel.series.append(
                    Series(
                        f"{org} {record_id[:8]}",
                        [step for step, _ in points],
                        [value for _, value in points],
                        group=org,
                        links=[f"/record/{record_id}"] * len(points),
                    )
                )
        panels.append(panel)
    return panels


def register(app: FastAPI, ui: UiContext) -> None:
    """Adds the catalog's pages to app."""
    names_lock = threading.Lock()
    cached: list[_Names] = []

    def known_names() -> _Names:
        with names_lock:
            if not cached or time.monotonic() - cached[0].at > _NAMES_TTL_S:
                cached[:] = [
                    _Names(
                        sorted(ui.store.known_names("metrics", 500)),
                        sorted(ui.store.known_names("params", 500)),
                        time.monotonic(),
                    )
                ]
            return cached[0]

    @app.get("/", response_class=HTMLResponse)
    def catalog(
        request: Request,
        q: str = "",
        order: str = "",
        col: list[str] = Query(default=[]),  # noqa: B008 (FastAPI's way to declare a list)
        page_number: int = Query(default=1, alias="page", ge=1, le=1_000_000),
        size: int = Query(default=50, ge=1, le=500),
    ) -> HTMLResponse:
        result = catalog_page(
            ui.home,
            ui.store,
            filter_text=q,
            order_text=order,
            columns=col,
            page=page_number,
            page_size=size,
            names=ui.names(),
        )
        known = known_names()

        def link(**changes: Any) -> str:
            query: dict[str, Any] = {"q": q, "order": order, "col": col, "page": page_number}
            query.update(changes)
            return "/?" + urlencode({k: v for k, v in query.items() if v}, doseq=True)

        sorts = {}
        for key in result.columns:
            descending = order.strip() != f"{key} desc"
            sorts[key] = link(order=f"{key} {'desc' if descending else 'asc'}", page=1)
        return ui.page(
            request,
            "catalog.html",
            status=400 if result.error else 200,
            result=result,
            q=q,
            order=order,
            chosen=col,
            headings=dict(BASE_COLUMNS),
            sorts=sorts,
            prev_link=link(page=page_number - 1) if page_number > 1 else None,
            next_link=link(page=page_number + 1) if result.has_next else None,
            total=ui.store.count_records(),
            metric_names=known.metrics,
            param_names=known.params,
        )

    @app.get("/record/{record_id}", response_class=HTMLResponse)
    def record(request: Request, record_id: str) -> HTMLResponse:
        try:
            view = record_view(ui.home, ui.store, record_id, ui.names())
        except GridpointError as exc:
            return ui.error(request, 404, str(exc))
        panels = curve_panels([("", view.stored.record)])
        models = ui.models_of(view.stored.id)
        names = ui.names()
        copies = [(names.name(c.peer_id), c) for c in copies_of(ui.store, view.stored.id)]
        return ui.page(
            request,
            "record.html",
            view=view,
            introduction=introduction_text(view),
            charts=[panel_chart(f"curve-{i}", p) for i, p in enumerate(panels)],
            models=models,
            copies=copies,
        )

    @app.get("/compare", response_class=HTMLResponse)
    def compare(
        request: Request,
        record_ids: list[str] = Query(default=[], alias="id"),  # noqa: B008
        metric: str = "",
    ) -> HTMLResponse:
        names: SignerNames = ui.names()
        if not 1 <= len(record_ids) <= MAX_COMPARED:
            return ui.error(request, 400, f"pick 1 to {MAX_COMPARED} records to compare")
        try:
            found = [find_record(ui.store, rid) for rid in record_ids]
        except GridpointError as exc:
            return ui.error(request, 404, str(exc))
        panels = compare_panels(
            [(names.name(s.signer_id), s.id, s.record) for s in found], metric or None
        )
        return ui.page(
            request,
            "compare.html",
            records=[(s, names.name(s.signer_id)) for s in found],
            charts=[panel_chart(f"compare-{i}", p) for i, p in enumerate(panels)],
        )
