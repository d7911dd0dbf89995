"""What a person is shown of the catalog's records, the same on the command line and in the UI.

Signers by organization name (`SignerNames`: this node's own name, or the name under which a
peer was trusted), values rounded for reading (`format_value`), a record found by its id or a
unique prefix (`find_record`), and one record in full with its provenance, lineage and, for
this node's own runs only, their private details (`record_view`), its author's standing
included: trusted, or "vouched by X (depth n)" (`introduction_text`). `catalog query` and
`catalog show` print these; the UI's pages render them (node/ui/views.py builds its pages on
them).

Must never write to the store, read a record without a limit, or attach a private detail to a
record another node signed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gridpoint.errors import RequestError
from gridpoint.node.control.gate import Gate
from gridpoint.node.control.introductions import Introduction
from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import CatalogStore, StoredRecord
from gridpoint.node.store.keys import key_spec
from gridpoint.node.store.query_filter import Comparison
from gridpoint.schema import record_to_json

__all__ = [
    "PrivateDetail",
    "RecordView",
    "SignerNames",
    "check_columns",
    "find_record",
    "format_value",
    "introduction_text",
    "record_view",
]


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


def check_columns(columns: list[str]) -> list[str]:
    """The columns asked for, each a known key (FilterError naming one that is not)."""
    for column in columns:
        key_spec(column)
    return columns


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
    #: How its author is taken in here now: "own", "trusted", "vouched" (introduction says
    #: by whom) or "unvouched" (neither trusted nor introduced now: the record was kept,
    #: new ones are refused).
    standing: str = "trusted"
    introduction: Introduction | None = None
    voucher_name: str = ""


def introduction_text(view: RecordView) -> str:
    """The author's standing in words, e.g. "vouched by alpha (depth 1)"; "" when trusted."""
    if view.standing == "vouched" and view.introduction is not None:
        return f"vouched by {view.voucher_name} (depth {view.introduction.depth})"
    if view.standing == "unvouched":
        return "not trusted nor vouched for now: kept from before, new records refused"
    return ""


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
    view = RecordView(stored, names.name(stored.signer_id), own, fields, parents, private, sources)
    if own:
        return replace(view, standing="own")
    gate = Gate.load(store, names.own_id, home.config.introductions.max_depth)
    if gate.trusted(stored.signer_id):
        return view
    found = gate.introduction(stored.signer_id)
    if found is None:
        return replace(view, standing="unvouched")
    return replace(
        view, standing="vouched", introduction=found, voucher_name=names.name(found.voucher_id)
    )


def _private_details(store: CatalogStore, record_id: str) -> list[PrivateDetail]:
    return [
        PrivateDetail(run.study_name, run.trial_number, run.detail.state, run.detail.error)
        for run in store.list_private_runs(kind=None)
        if run.record_id == record_id
    ]
