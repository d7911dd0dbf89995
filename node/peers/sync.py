"""Pull sync: page through a trusted peer's catalog and admit what verifies.

Pages are asked for by reference (SyncRequest.refs_only): a page names its records by id,
and only those this node does not hold are fetched whole (Catalog.Fetch), so a record that
several peers relay is downloaded in full about once, whatever the number of peers; a peer
that offers a record this node holds is still noted as one of its sources (provenance). A peer
that predates refs_only sends whole envelopes, taken as before.

Each page is verified envelope by envelope (a bad one is refused and counted, the rest
stored) and stored together with the peer's next cursor in one transaction, so an
interrupted sync resumes exactly after the last stored page. Records refused for a reason
that can pass (an author not trusted yet, a signing time slightly ahead) are kept in the same
transaction and admitted again at the start of later rounds. Statements (tombstones, key
rotations and revocations) come through the same pages, before the records that follow them,
and pass the same Gate (control/gate.py); a page that holds statements is verified in order
and stored before the next page is verified, since what it says (a rotated or revoked key)
decides what follows.

A trusted peer can still be buggy or hostile, so one round with one peer is bounded: a cursor
that does not advance (or is not one we can store) ends it, and so do MAX_PAGES_PER_ROUND,
MAX_RECORDS_PER_ROUND and PEER_DEADLINE_S; the rest waits for the next round. Peers are
synced side by side. Must never raise out of sync_peer() (one peer's failure, whatever it is,
is its report's error) nor log one line per refused record (one line per page, rate-limited).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from gridpoint.errors import (
    ClockOutOfWindow,
    EnvelopeError,
    GridpointError,
    PeerError,
    PeerMisbehaved,
    UnknownSigner,
    UnstorableRecord,
    Withdrawn,
)
from gridpoint.node.control.gate import Gate
from gridpoint.node.control.statements import STATEMENT_TYPES
from gridpoint.node.home import NodeHome
from gridpoint.node.logs import log_event, log_limited
from gridpoint.node.peers.transport import Connector, PeerTransport, SyncBatch
from gridpoint.node.protocol.envelope import canonical_envelope, content_id
from gridpoint.node.store.base import AddResult, CatalogStore, Peer, PendingEnvelope, StoredRecord
from gridpoint.node.store.control_base import StoredStatement
from gridpoint.v1 import envelope_pb2

__all__ = [
    "MAX_CURSOR_CHARS",
    "MAX_PAGES_PER_ROUND",
    "MAX_PARALLEL_PEERS",
    "MAX_RECORDS_PER_ROUND",
    "PEER_DEADLINE_S",
    "RETRYABLE",
    "SyncLimits",
    "SyncReport",
    "sync_all",
    "sync_peer",
]

#: Most pages pulled from one peer in one round.
MAX_PAGES_PER_ROUND = 1_000
#: Most envelopes received from one peer in one round (each costs a signature check).
MAX_RECORDS_PER_ROUND = 200_000
#: Seconds one round with one peer may take, every call included.
PEER_DEADLINE_S = 300.0
#: Most peers synced at the same time.
MAX_PARALLEL_PEERS = 4
#: Longest cursor a peer may hand us (the store keeps it in 64 characters).
MAX_CURSOR_CHARS = 64
#: Refusal reasons that can pass: such envelopes are kept and admitted again later.
RETRYABLE = frozenset({UnknownSigner.reason, ClockOutOfWindow.reason})

_CURSOR = re.compile(rf"[\x21-\x7e]{{0,{MAX_CURSOR_CHARS}}}")
_VERIFY_THREADS = 2
_CHUNK = 64


@dataclass(frozen=True)
class SyncLimits:
    """The bounds of one round with one peer."""

    max_pages: int = MAX_PAGES_PER_ROUND
    max_records: int = MAX_RECORDS_PER_ROUND
    deadline_s: float = PEER_DEADLINE_S


@dataclass
class SyncReport:
    """What one pull from one peer did.

    stopped names the bound that ended the round before the peer's end ("max-pages",
    "max-records", "deadline"): the rest follows next round. error says why the round failed.
    """

    peer_id: str
    address: str
    new: int = 0
    statements: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    received: int = 0
    retried: int = 0
    kept: int = 0
    received_bytes: int = 0
    stopped: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "peer": self.peer_id,
            "address": self.address,
            "new": self.new,
            "statements": self.statements,
            "duplicates": self.duplicates,
            "refused": sum(self.refused.values()),
            "refused_reasons": dict(self.refused),
            "pages": self.pages,
            "retried": self.retried,
            "kept_for_retry": self.kept,
            "stopped": self.stopped,
            "error": self.error,
        }


Outcome = StoredRecord | StoredStatement | tuple[envelope_pb2.SignedEnvelope, EnvelopeError]


def sync_peer(
    home: NodeHome,
    store: CatalogStore,
    peer: Peer,
    connect: Connector,
    limits: SyncLimits = SyncLimits(),  # noqa: B008 (frozen, so one shared default is safe)
    *,
    log_unreached: bool = True,
) -> SyncReport:
    """Pulls what is new from one peer, within limits; every failure is reported, none raised.
    With log_unreached False a round that failed before any page came writes no "sync" line
    (the daemon's loop logs a peer going down once, not at every retry)."""
    report = SyncReport(peer.node_id, peer.address)
    try:
        # Sync alone follows introductions (vouched authors), when config.toml allows it.
        gate = Gate.load(store, home.identity.node_id, home.config.introductions.max_depth)
        if _retry_pending(store, peer, gate, report):
            gate = gate.reload()
        _pull(home, store, peer, connect, limits, gate, report)
    except GridpointError as exc:
        report.error = report.error or str(exc)
    except Exception as exc:  # a bug or a surprise from one peer must not end sync with others
        report.error = f"sync with this peer failed unexpectedly ({exc.__class__.__name__})"
        log_event("sync failed", logging.ERROR, peer=peer.node_id, error=exc.__class__.__name__)
    if report.error is not None and report.pages == 0 and not log_unreached:
        return report
    log_event(
        "sync",
        peer=peer.node_id,
        new=report.new,
        statements=report.statements,
        duplicates=report.duplicates,
        refused=sum(report.refused.values()),
        pages=report.pages,
        retried=report.retried,
        received_bytes=report.received_bytes,
        stopped=report.stopped,
        error=report.error,
    )
    return report


def _pull(
    home: NodeHome,
    store: CatalogStore,
    peer: Peer,
    connect: Connector,
    limits: SyncLimits,
    gate: Gate,
    report: SyncReport,
) -> None:
    """Pages through the peer. The next page is fetched while the current one is verified
    (on two threads: Ed25519 verification releases the GIL) and the previous one stored, so
    network, CPU and database overlap; pages are still stored strictly in order, each with
    its cursor, by one writer thread. A page of statements is verified in order, and stored
    before anything after it is verified (the gate is read again then)."""
    deadline = time.monotonic() + limits.deadline_s
    page_size = home.config.sync.page_size
    seen = {peer.sync_cursor}
    storing: Future[AddResult] | None = None
    try:
        with (
            connect(peer) as client,
            ThreadPoolExecutor(max_workers=1) as fetcher,
            ThreadPoolExecutor(max_workers=_VERIFY_THREADS) as verifier,
            ThreadPoolExecutor(max_workers=1) as writer,
        ):
            client.deadline = deadline
            pending = fetcher.submit(_page, client, store, peer.sync_cursor, page_size)
            while True:
                try:
                    batch = pending.result()
                finally:
                    report.received_bytes = client.received_bytes
                report.pages += 1
                report.received += len(batch.envelopes)
                more = batch.has_more and bool(batch.envelopes or batch.refs)
                _check_cursor(peer, batch, seen, more)
                stop = _bound_reached(report, limits, deadline) if more else None
                if more and stop is None:
                    pending = fetcher.submit(_page, client, store, batch.next_cursor, page_size)
                says = any(e.payload_type in STATEMENT_TYPES for e in batch.envelopes)
                if says:
                    outcomes = _admit_in_order(batch.envelopes, gate)
                else:
                    chunks = [
                        batch.envelopes[i : i + _CHUNK]
                        for i in range(0, len(batch.envelopes), _CHUNK)
                    ]
                    outcomes = [
                        o
                        for chunk in verifier.map(_admit, chunks, [gate] * len(chunks))
                        for o in chunk
                    ]
                admitted, statements, retry = _sort_outcomes(peer, outcomes, report)
                if storing is not None:
                    stored, storing = storing, None
                    _count(report, stored.result())
                storing = writer.submit(
                    store.store_sync_page,
                    peer.node_id,
                    admitted,
                    batch.next_cursor,
                    retry,
                    statements,
                    batch.held,
                )
                if says:
                    stored, storing = storing, None
                    _count(report, stored.result())
                    gate = gate.reload()
                if not more or stop is not None:
                    report.stopped = stop
                    break
    finally:
        if storing is not None:  # the last page stored (or its write failed: then it raises)
            _count(report, storing.result())


def _page(client: PeerTransport, store: CatalogStore, cursor: str, limit: int) -> SyncBatch:
    """The page after cursor, by reference, with the records it offers that this node does
    not hold fetched whole (in as many Fetch calls as the message limit needs)."""
    batch = client.sync_page(cursor, limit, refs_only=True)
    if not batch.refs:
        return batch
    held = store.record_signers([r.id for r in batch.refs])
    wanted = list(dict.fromkeys(r.fetch_id for r in batch.refs if r.id not in held))
    envelopes = list(batch.envelopes)
    while wanted:
        fetched = client.fetch(wanted)
        if fetched.answered == 0:
            raise PeerMisbehaved(f"peer {client.address} answered a fetch with nothing")
        envelopes += fetched.envelopes
        wanted = wanted[fetched.answered :]
    offered = [r.id for r in batch.refs if r.id in held]
    return SyncBatch(envelopes, batch.next_cursor, batch.has_more, batch.refs, offered)


def _check_cursor(peer: Peer, batch: SyncBatch, seen: set[str], more: bool) -> None:
    """PeerMisbehaved for a cursor we cannot store, or one that does not move on."""
    if not _CURSOR.fullmatch(batch.next_cursor):
        raise PeerMisbehaved(
            f"peer {peer.address} sent a cursor that is not 0-{MAX_CURSOR_CHARS} printable "
            "ASCII characters; its page was not stored"
        )
    if more and batch.next_cursor in seen:
        raise PeerMisbehaved(
            f"peer {peer.address} says more records follow but its cursor did not advance"
        )
    seen.add(batch.next_cursor)


def _bound_reached(report: SyncReport, limits: SyncLimits, deadline: float) -> str | None:
    if report.pages >= limits.max_pages:
        return "max-pages"
    if report.received >= limits.max_records:
        return "max-records"
    if time.monotonic() >= deadline:
        return "deadline"
    return None


def _admit(envelopes: list[envelope_pb2.SignedEnvelope], gate: Gate) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for envelope in envelopes:
        try:
            outcomes.append(gate.admit(envelope))
        except EnvelopeError as exc:
            outcomes.append((envelope, exc))
    return outcomes


def _admit_in_order(envelopes: list[envelope_pb2.SignedEnvelope], gate: Gate) -> list[Outcome]:
    """One by one, each admitted statement noted before the next is checked (a rotation,
    then a revocation signed by the new key, may come in one page)."""
    outcomes: list[Outcome] = []
    for envelope in envelopes:
        [outcome] = _admit([envelope], gate)
        if isinstance(outcome, StoredStatement):
            gate.note(outcome)
        outcomes.append(outcome)
    return outcomes


def _sort_outcomes(
    peer: Peer, outcomes: list[Outcome], report: SyncReport
) -> tuple[list[StoredRecord], list[StoredStatement], list[PendingEnvelope]]:
    """The admitted records and statements and the envelopes to retry; refusals counted,
    logged once."""
    admitted: list[StoredRecord] = []
    statements: list[StoredStatement] = []
    retry: list[PendingEnvelope] = []
    refused: Counter[str] = Counter()
    example: tuple[str, str] | None = None
    for outcome in outcomes:
        if isinstance(outcome, StoredRecord):
            admitted.append(outcome)
            continue
        if isinstance(outcome, StoredStatement):
            statements.append(outcome)
            continue
        envelope, exc = outcome
        refused[exc.reason] += 1
        example = example or (envelope.signer_id, str(exc))
        if exc.reason in RETRYABLE:
            retry.append(
                PendingEnvelope(
                    content_id(envelope.signer_id, envelope.payload),
                    canonical_envelope(envelope),
                    exc.reason,
                )
            )
    report.refused.update(refused)
    if example is not None:
        log_limited(
            f"refused from {peer.node_id}",
            "records refused",
            logging.WARNING,
            peer=peer.node_id,
            refused=dict(refused),
            example_signer=example[0],
            example=example[1],
        )
    return admitted, statements, retry


def _retry_pending(store: CatalogStore, peer: Peer, gate: Gate, report: SyncReport) -> bool:
    """Admits again what this peer served earlier and was refused for a reason that can pass;
    whether a statement was among them (then the gate must be read again)."""
    admitted: list[StoredRecord] = []
    statements: list[StoredStatement] = []
    dropped: list[str] = []
    for item in store.pending_envelopes(peer.node_id):
        try:
            outcome = gate.admit(envelope_pb2.SignedEnvelope.FromString(item.envelope))
        except EnvelopeError as exc:
            if exc.reason not in RETRYABLE:
                dropped.append(item.record_id)
            continue
        except DecodeError:
            dropped.append(item.record_id)
            continue
        if isinstance(outcome, StoredStatement):
            gate.note(outcome)
            statements.append(outcome)
        else:
            admitted.append(outcome)
    if admitted or statements or dropped:
        result = store.resolve_pending(peer.node_id, admitted, dropped, statements)
        report.retried = len(admitted) + len(statements)
        _count(report, result)
    return bool(statements)


def _count(report: SyncReport, result: AddResult) -> None:
    report.new += result.new
    report.statements += result.statements
    report.duplicates += result.duplicates
    report.kept += result.kept
    if result.withdrawn:
        # Offered again by a peer that has not heard of the tombstone yet: never taken back.
        report.refused[Withdrawn.reason] += len(result.withdrawn)
    if result.unstorable:
        report.refused[UnstorableRecord.reason] += len(result.unstorable)
        log_limited(
            f"unstorable from {report.peer_id}",
            "records refused",
            logging.WARNING,
            peer=report.peer_id,
            refused={UnstorableRecord.reason: len(result.unstorable)},
            example=result.unstorable[0],
        )


def sync_all(
    home: NodeHome,
    store: CatalogStore,
    connect: Connector,
    only: str | None = None,
    limits: SyncLimits = SyncLimits(),  # noqa: B008 (frozen, so one shared default is safe)
) -> list[SyncReport]:
    """Pulls from every trusted peer (or the one named), side by side; one report each."""
    peers = store.list_peers()
    if only is not None:
        peers = [p for p in peers if p.node_id == only or p.node_id.startswith(only)]
        if not peers:
            raise PeerError(f"no trusted peer {only!r}; see `gridpoint peer list`")
    if len(peers) <= 1:
        return [sync_peer(home, store, p, connect, limits) for p in peers]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_PEERS, len(peers))) as pool:
        return list(pool.map(lambda p: sync_peer(home, store, p, connect, limits), peers))
