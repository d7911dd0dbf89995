"""What each page of the UI (and `catalog show`, `gridpoint plot`) shows, read from the node's
store and home: plain dataclasses, no web framework.

Signers are shown by organization name: this node's own name, or the name under which a peer
was trusted. The private details of a run (study and trial names, a failed trial's error) come
from the store's private runs and are read only for records this node signed.

Must never write to the store, read a page's worth of records without a limit, or attach a
private detail to a record another node signed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gridpoint.errors import FilterError, RequestError
from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import CatalogStore, StoredRecord
from gridpoint.node.store.keys import key_value
from gridpoint.node.store.query_filter import (
    Comparison,
    FilterNode,
    OrderBy,
    parse_filter,
    parse_order_by,
)
from gridpoint.node.ui.charts import Panel, Series
from gridpoint.schema import RunRecord, record_to_json

__all__ = [
    "CatalogPage",
    "CatalogRow",
    "PrivateDetail",
    "RecordView",
    "SignerNames",
    "catalog_page",
    "curve_panels",
    "find_record",
    "format_value",
    "record_view",
]

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


class SignerNames:
    """Organization names by node id: this node's and its trusted peers'."""

    def __init__(self, home: NodeHome, store: CatalogStore) -> None:
        self.own_id = home.identity.node_id
        self._names = {p.node_id: p.name for p in store.list_peers()}
        self._names[self.own_id] = home.config.name

    def name(self, node_id: str) -> str:
        """The name, or a short id for a signer no longer trusted (relayed before)."""
        return self._names.get(node_id, node_id[:12])

    def is_own(self, node_id: str) -> bool:
        return node_id == self.own_id


def format_value(value: Any) -> str:
    """A number rounded for reading (4 significant digits; integers whole), else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


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
    from gridpoint.node.tuning.anonymize import own_study_names

    return own_study_names(parse_filter(filter_text), home.secret), parse_order_by(order_text)


def check_columns(columns: list[str]) -> list[str]:
    """The columns asked for, each a known key (FilterError naming one that is not)."""
    from gridpoint.node.store.keys import key_spec

    for column in columns:
        key_spec(column)
    return columns


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


def find_record(store: CatalogStore, id_or_prefix: str) -> StoredRecord:
    """The record with this id or unique id prefix; RequestError naming what is wrong."""
    prefix = id_or_prefix.strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix) or len(prefix) > 64:
        raise RequestError(f"{id_or_prefix[:80]!r} is not a record id (hex digits)")
    if len(prefix) == 64:
        found = store.get_record(prefix)
        if found is None:
            raise RequestError(f"no record {prefix} in this node's catalog")
        return found
    matches = store.query(Comparison("id", "LIKE", prefix + "%"), limit=2)
    if not matches:
        raise RequestError(f"no record id starts with {prefix!r}")
    if len(matches) > 1:
        raise RequestError(f"{prefix!r} names more than one record; give more of the id")
    return matches[0]


@dataclass(frozen=True)
class PrivateDetail:
    """This node's own knowledge of one of its runs (never another node's)."""

    study_name: str
    trial_number: int
    state: str
    error: str


@dataclass(frozen=True)
class RecordView:
    """Everything the Record page shows."""

    stored: StoredRecord
    signer_name: str
    own: bool
    fields: dict[str, Any]
    parents: list[tuple[str, str | None]]
    private: list[PrivateDetail]
    #: The trusted peers sync found the record at (organization name, first seen).
    sources: list[tuple[str, datetime]]


def record_view(
    home: NodeHome, store: CatalogStore, id_or_prefix: str, names: SignerNames | None = None
) -> RecordView:
    """One record in full, with its provenance, lineage and (own runs only) private details."""
    names = names or SignerNames(home, store)
    stored = find_record(store, id_or_prefix)
    own = names.is_own(stored.signer_id)
    fields = record_to_json(stored.record)
    fields.pop("curve", None)
    parents = [
        (pid, None if (p := store.get_record(pid)) is None else names.name(p.signer_id))
        for pid in stored.record.parents
    ]
    private = _private_details(store, stored.id) if own else []
    sources = [(names.name(s.peer_id), s.first_seen_at) for s in store.record_sources(stored.id)]
    return RecordView(stored, names.name(stored.signer_id), own, fields, parents, private, sources)


def _private_details(store: CatalogStore, record_id: str) -> list[PrivateDetail]:
    details = []
    for run in store.list_private_runs():
        if run.record_id != record_id:
            continue
        try:
            detail = json.loads(run.detail)
        except ValueError:
            detail = {}
        details.append(
            PrivateDetail(
                study_name=run.study_name,
                trial_number=run.trial_number,
                state=str(detail.get("state", "")),
                error=str(detail.get("error") or ""),
            )
        )
    return details


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
