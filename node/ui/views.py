"""What the UI's catalog page and its charts (and `gridpoint plot`) show, read from the node's
store and home: plain dataclasses, no web framework.

Built on what the command line shows too (node/record_views.py: signer names, values rounded
for reading, a record with its provenance and, for this node's own runs, private details).

Must never write to the store, read a page's worth of records without a limit, or attach a
private detail to a record another node signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gridpoint.errors import FilterError, RequestError
from gridpoint.node.home import NodeHome
from gridpoint.node.pseudonyms import own_study_names
from gridpoint.node.record_views import SignerNames, check_columns
from gridpoint.node.store.base import CatalogStore, StoredRecord
from gridpoint.node.store.keys import key_value
from gridpoint.node.store.query_filter import FilterNode, OrderBy, parse_filter, parse_order_by
from gridpoint.node.ui.charts import Panel, Series
from gridpoint.schema import RunRecord

__all__ = ["CatalogPage", "CatalogRow", "catalog_page", "curve_panels", "record_label"]

#: Columns every catalog row has (key, heading); chosen metrics and parameters follow.
BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("signer", "signed by"),
    ("kind", "kind"),
    ("status", "status"),
    ("task.type", "task"),
    ("model.base", "model"),
)
#: Most records on one catalog page.
MAX_PAGE_SIZE = 500
#: Most records compared on one chart.
MAX_COMPARED = 12


@dataclass(frozen=True)
class CatalogRow:
    """One record as a row: its id, signer's name and the chosen columns' values."""

    id: str
    signer_name: str
    own: bool
    values: dict[str, Any]


@dataclass(frozen=True)
class CatalogPage:
    """A page of the catalog's answer to a filter, or the error that filter gets."""

    rows: list[CatalogRow]
    columns: list[str]
    page: int
    page_size: int
    has_next: bool
    error: str | None = None
    total_records: int = 0
    metric_names: list[str] = field(default_factory=list)
    param_names: list[str] = field(default_factory=list)


def parse_query(
    home: NodeHome, filter_text: str, order_text: str
) -> tuple[FilterNode | None, OrderBy | None]:
    """The filter (own study names as pseudonyms, as the CLI reads them) and the order."""
    return own_study_names(parse_filter(filter_text), home.secret), parse_order_by(order_text)


def catalog_page(
    home: NodeHome,
    store: CatalogStore,
    *,
    filter_text: str = "",
    order_text: str = "",
    columns: list[str] | None = None,
    page: int = 1,
    page_size: int = 50,
    names: SignerNames | None = None,
) -> CatalogPage:
    """One page of matching records; a bad filter, order or column is the page's error."""
    names = names or SignerNames(home, store)
    chosen = [c for c in (columns or []) if c]
    page = max(1, page)
    page_size = min(max(1, page_size), MAX_PAGE_SIZE)
    base = [key for key, _ in BASE_COLUMNS]
    try:
        check_columns(chosen)
        where, order = parse_query(home, filter_text, order_text)
        found = store.query(
            where, limit=page_size + 1, order_by=order, offset=(page - 1) * page_size
        )
    except (FilterError, RequestError) as exc:
        return CatalogPage([], base + chosen, page, page_size, False, error=str(exc))
    rows = [
        CatalogRow(
            id=s.id,
            signer_name=names.name(s.signer_id),
            own=names.is_own(s.signer_id),
            values={key: key_value(s, key) for key in base[2:] + chosen},
        )
        for s in found[:page_size]
    ]
    return CatalogPage(rows, base + chosen, page, page_size, len(found) > page_size)


def curve_panels(records: list[tuple[str, RunRecord]], *, metric: str | None = None) -> list[Panel]:
    """One panel per curve metric (or only `metric`), one series per record (label given)."""
    metrics: list[str] = []
    for _, record in records:
        for point in record.curve:
            if point.metric not in metrics:
                metrics.append(point.metric)
    if metric is not None:
        metrics = [m for m in metrics if m == metric]
    panels = []
    for name in metrics:
        series = []
        for label, record in records:
            points = sorted((p.step, p.value) for p in record.curve if p.metric == name)
            if points:
                series.append(Series(label, [p[0] for p in points], [p[1] for p in points]))
        panels.append(Panel(name, "step", name, series))
    return panels


def record_label(stored: StoredRecord, names: SignerNames) -> str:
    return f"{names.name(stored.signer_id)} {stored.id[:8]}"
