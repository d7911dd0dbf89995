"""The store interface: what the node keeps, independent of the database behind it.

Contract for every implementation (see node/sql_store.py):
- Thread-safe: one instance serves the daemon's gRPC threads and its sync loop.
- Storing is idempotent by record id; a record already present is counted as a duplicate
  and left untouched, so nothing stored is ever changed by a later write.
- A sync page and the peer's new cursor are stored in one transaction: a node killed
  mid-sync resumes from the last fully stored page, never twice and never skipping.
- Cursors returned by records_after() only move forward in storage order.
- The store verifies nothing: callers hand it envelopes they already verified.
- A record the database cannot hold is refused on its own (AddResult.unstorable); the rest
  of its page and the cursor are still stored.
- Everything a call reads is bounded: queries take a limit (1..MAX_QUERY_LIMIT), and
  query_envelopes() stops reading rows once its byte budget is spent.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gridpoint.node.store.control_base import ControlStore, StoredStatement
from gridpoint.node.store.query_filter import FilterNode, OrderBy
from gridpoint.schema import RunRecord

__all__ = [
    "MAX_QUERY_LIMIT",
    "AddResult",
    "CatalogStore",
    "Page",
    "Peer",
    "PendingEnvelope",
    "PrivateRun",
    "StoredRecord",
]

#: Most records one store query returns (peers are capped far lower by the service).
MAX_QUERY_LIMIT = 100_000


@dataclass(frozen=True)
class StoredRecord:
    """A verified record: its id, signer, envelope bytes as received, and decoded content."""

    id: str
    signer_id: str
    envelope: bytes
    signed_at_ms: int
    record: RunRecord


@dataclass(frozen=True)
class AddResult:
    """What a write did: records new and already present, the ids the database refused, and
    how many pending envelopes were kept (and dropped for want of room); the ids refused as
    withdrawn by their author, and the statements new to the store."""

    new: int
    duplicates: int
    unstorable: tuple[str, ...] = ()
    kept: int = 0
    dropped: int = 0
    withdrawn: tuple[str, ...] = ()
    statements: int = 0


@dataclass(frozen=True)
class PendingEnvelope:
    """A verified envelope refused for a reason that can pass (reason: the error's slug)."""

    record_id: str
    envelope: bytes
    reason: str


@dataclass(frozen=True)
class Page:
    """Envelopes (bytes as stored) after a cursor, and where to resume.

    cursors[i] is the cursor just after envelopes[i], so a reader that can take only part
    of the page (a message size limit) resumes exactly there. Records are not decoded:
    serving a page is a copy, not a parse.
    """

    envelopes: list[bytes]
    cursors: list[str]
    next_cursor: str
    has_more: bool


@dataclass(frozen=True)
class Peer:
    """A trusted peer."""

    node_id: str
    address: str
    name: str
    fingerprint: str
    cert_pem: bytes
    added_at: datetime
    sync_cursor: str = ""
    last_sync_at: datetime | None = None


@dataclass(frozen=True)
class RecordSource:
    """A trusted peer that served a record by sync (provenance), and when it first did."""

    peer_id: str
    first_seen_at: datetime


@dataclass(frozen=True)
class PrivateRun:
    """The organization's own full record of a run (never leaves the node)."""

    study_name: str
    trial_number: int
    detail: str
    record_id: str | None
    created_at: datetime


class CatalogStore(ControlStore):
    """Records, trusted peers and private runs of one node (and, from ControlStore, the
    owner's-control tables)."""

    @abstractmethod
    def add_records(self, records: Sequence[StoredRecord]) -> AddResult: ...

    @abstractmethod
    def store_sync_page(
        self,
        peer_id: str,
        records: Sequence[StoredRecord],
        next_cursor: str,
        pending: Sequence[PendingEnvelope] = (),
        statements: Sequence[StoredStatement] = (),
    ) -> AddResult:
        """Stores a page (its statements first), the envelopes to retry later and the peer's
        cursor, all or nothing."""

    @abstractmethod
    def pending_envelopes(self, peer_id: str) -> list[PendingEnvelope]:
        """The envelopes kept for retry from this peer, oldest first."""

    @abstractmethod
    def resolve_pending(
        self,
        peer_id: str,
        admitted: Sequence[StoredRecord],
        dropped: Sequence[str],
        statements: Sequence[StoredStatement] = (),
    ) -> AddResult:
        """Stores retried envelopes now admitted; forgets them, the dropped and the expired."""

    @abstractmethod
    def get_record(self, record_id: str) -> StoredRecord | None: ...

    @abstractmethod
    def record_sources(self, record_id: str) -> list[RecordSource]:
        """The trusted peers this node found the record at by sync, first seen first."""

    @abstractmethod
    def records_after(self, cursor: str, limit: int) -> Page: ...

    @abstractmethod
    def query(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        offset: int = 0,
    ) -> list[StoredRecord]:
        """Matching records in order, the first `offset` skipped (a page of a long answer)."""

    @abstractmethod
    def query_envelopes(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        max_bytes: int,
    ) -> list[bytes]:
        """Matching envelopes as stored, in order, stopping before max_bytes (not decoded)."""

    @abstractmethod
    def count_records(self) -> int: ...

    @abstractmethod
    def known_names(self, family: Literal["params", "metrics"], limit: int = 10_000) -> set[str]:
        """Hyperparameter or metric names that some stored record has (at most limit)."""

    @abstractmethod
    def add_peer(self, peer: Peer) -> None: ...

    @abstractmethod
    def get_peer(self, node_id: str) -> Peer | None: ...

    @abstractmethod
    def list_peers(self) -> list[Peer]: ...

    @abstractmethod
    def remove_peer(self, node_id: str) -> bool: ...

    @abstractmethod
    def add_private_run(self, run: PrivateRun) -> int: ...

    @abstractmethod
    def list_private_runs(self, study_name: str | None = None) -> list[PrivateRun]: ...

    @abstractmethod
    def close(self) -> None: ...
