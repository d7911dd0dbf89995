"""Pull sync: page through a trusted peer's catalog and admit what verifies.

Each page is verified envelope by envelope (a bad one is refused and counted, the rest
stored) and stored together with the peer's next cursor in one transaction, so an
interrupted sync resumes exactly after the last stored page.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from gridpoint.errors import EnvelopeError, GridpointError, PeerError
from gridpoint.node.catalog import admit, trust_check
from gridpoint.node.home import NodeHome
from gridpoint.node.logs import log_event
from gridpoint.node.peers.transport import Connector
from gridpoint.node.store.base import AddResult, CatalogStore, Peer, StoredRecord
from gridpoint.v1 import envelope_pb2

__all__ = ["SyncReport", "sync_all", "sync_peer"]

_VERIFY_THREADS = 2
_CHUNK = 64


@dataclass
class SyncReport:
    """What one pull from one peer did."""

    peer_id: str
    address: str
    new: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "peer": self.peer_id,
            "address": self.address,
            "new": self.new,
            "duplicates": self.duplicates,
            "refused": sum(self.refused.values()),
            "refused_reasons": dict(self.refused),
            "error": self.error,
        }


def sync_peer(home: NodeHome, store: CatalogStore, peer: Peer, connect: Connector) -> SyncReport:
    """Pulls everything new from one peer; errors are reported, not raised.

    The next page is fetched while the current one is verified, verification runs on two
    threads (Ed25519 verification releases the GIL), and a page is stored while the next is
    verified, so network, CPU and database overlap. Pages are still stored strictly in
    order, each with its cursor, by one writer thread.
    """
    report = SyncReport(peer.node_id, peer.address)
    is_trusted = trust_check(store, home.identity.node_id)
    page_size = home.config.sync.page_size
    storing: Future[AddResult] | None = None
    try:
        with (
            connect(peer) as client,
            ThreadPoolExecutor(max_workers=1) as fetcher,
            ThreadPoolExecutor(max_workers=_VERIFY_THREADS) as verifier,
            ThreadPoolExecutor(max_workers=1) as writer,
        ):
            pending = fetcher.submit(client.sync_page, peer.sync_cursor, page_size)
            while True:
                batch = pending.result()
                more = batch.has_more and bool(batch.envelopes)
                if more:
                    pending = fetcher.submit(client.sync_page, batch.next_cursor, page_size)
                chunks = [
                    batch.envelopes[i : i + _CHUNK] for i in range(0, len(batch.envelopes), _CHUNK)
                ]
                admitted: list[StoredRecord] = []
                for chunk in verifier.map(lambda c: _admit_chunk(c, is_trusted), chunks):
                    for outcome in chunk:
                        if isinstance(outcome, StoredRecord):
                            admitted.append(outcome)
                        else:
                            signer, exc = outcome
                            report.refused[exc.reason] += 1
                            log_event(
                                "record refused",
                                logging.WARNING,
                                peer=peer.node_id,
                                signer=signer,
                                reason=str(exc),
                            )
                if storing is not None:
                    _count(report, storing.result())
                storing = writer.submit(
                    store.store_sync_page, peer.node_id, admitted, batch.next_cursor
                )
                if not more:
                    break
    except GridpointError as exc:
        report.error = str(exc)
    if storing is not None:  # the last page stored (or its write failed)
        try:
            _count(report, storing.result())
        except GridpointError as exc:
            report.error = report.error or str(exc)
    log_event(
        "sync",
        peer=peer.node_id,
        new=report.new,
        duplicates=report.duplicates,
        refused=sum(report.refused.values()),
        error=report.error,
    )
    return report


def _count(report: SyncReport, result: AddResult) -> None:
    report.new += result.new
    report.duplicates += result.duplicates


def _admit_chunk(
    envelopes: list[envelope_pb2.SignedEnvelope], is_trusted: Callable[[str], bool]
) -> list[StoredRecord | tuple[str, EnvelopeError]]:
    outcomes: list[StoredRecord | tuple[str, EnvelopeError]] = []
    for envelope in envelopes:
        try:
            outcomes.append(admit(envelope, is_trusted))
        except EnvelopeError as exc:
            outcomes.append((envelope.signer_id, exc))
    return outcomes


def sync_all(
    home: NodeHome, store: CatalogStore, connect: Connector, only: str | None = None
) -> list[SyncReport]:
    """Pulls from every trusted peer (or the one named), one after the other."""
    peers = store.list_peers()
    if only is not None:
        peers = [p for p in peers if p.node_id == only or p.node_id.startswith(only)]
        if not peers:
            raise PeerError(f"no trusted peer {only!r}; see `gridpoint peer list`")
    return [sync_peer(home, store, p, connect) for p in peers]
