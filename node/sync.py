"""Pull sync: page through a trusted peer's catalog and admit what verifies.

Each page is verified envelope by envelope (a bad one is refused and counted, the rest
stored) and stored together with the peer's next cursor in one transaction, so an
interrupted sync resumes exactly after the last stored page.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from node.catalog import admit, trust_check
from node.errors import EnvelopeError, GridpointError, PeerError
from node.home import NodeHome
from node.logs import log_event
from node.peers import client_for
from node.store import CatalogStore, Peer

__all__ = ["SyncReport", "sync_all", "sync_peer"]


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


def _reason(exc: GridpointError) -> str:
    return {
        "BadSignature": "bad signature",
        "UnknownSigner": "untrusted signer",
        "WrongPayloadType": "wrong payload type",
        "ClockOutOfWindow": "signed in the future",
    }.get(type(exc).__name__, "invalid record")


def sync_peer(home: NodeHome, store: CatalogStore, peer: Peer) -> SyncReport:
    """Pulls everything new from one peer; errors are reported, not raised."""
    report = SyncReport(peer.node_id, peer.address)
    is_trusted = trust_check(store, home.identity.node_id)
    cursor = peer.sync_cursor
    try:
        with client_for(home, peer) as client:
            while True:
                batch = client.sync_page(cursor, home.config.sync.page_size)
                admitted = []
                for envelope in batch.envelopes:
                    try:
                        admitted.append(admit(envelope, is_trusted))
                    except EnvelopeError as exc:
                        report.refused[_reason(exc)] += 1
                        log_event(
                            "record refused",
                            logging.WARNING,
                            peer=peer.node_id,
                            signer=envelope.signer_id,
                            reason=str(exc),
                        )
                result = store.store_sync_page(peer.node_id, admitted, batch.next_cursor)
                report.new += result.new
                report.duplicates += result.duplicates
                cursor = batch.next_cursor
                if not batch.has_more or not batch.envelopes:
                    break
    except (PeerError, GridpointError) as exc:
        report.error = str(exc)
    log_event(
        "sync",
        peer=peer.node_id,
        new=report.new,
        duplicates=report.duplicates,
        refused=sum(report.refused.values()),
        error=report.error,
    )
    return report


def sync_all(home: NodeHome, store: CatalogStore, only: str | None = None) -> list[SyncReport]:
    """Pulls from every trusted peer (or the one named), one after the other."""
    peers = store.list_peers()
    if only is not None:
        peers = [p for p in peers if p.node_id == only or p.node_id.startswith(only)]
        if not peers:
            raise PeerError(f"no trusted peer {only!r}; see `gridpoint peer list`")
    return [sync_peer(home, store, p) for p in peers]
