"""What sync leaves in the store: envelopes kept for retry, and where each record came from."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import Peer, PendingEnvelope
from gridpoint.node.store.sql_store import SqlStore
from tests.helpers import MakeHome, signed_records


def _peer(store: SqlStore, home: NodeHome) -> str:
    store.add_peer(Peer(home.identity.node_id, "127.0.0.1:1", home.config.name, "ff", b"pem",
                        datetime.now(UTC)))  # fmt: skip
    return home.identity.node_id


def test_envelopes_kept_for_retry_come_back_oldest_first_until_resolved(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: B's page leaves three envelopes pending, in two pages.
    b = make_home("B")
    peer = _peer(store, b)
    first, second, third = signed_records(b, 3)
    kept = store.store_sync_page(peer, [], "1", [PendingEnvelope(first.id, first.envelope,
                                                                 "unknown-signer")])  # fmt: skip
    again = store.store_sync_page(peer, [], "3", [
        PendingEnvelope(second.id, second.envelope, "unknown-signer"),
        PendingEnvelope(third.id, third.envelope, "unknown-signer"),
        PendingEnvelope(first.id, first.envelope, "unknown-signer"),  # already kept
    ])  # fmt: skip
    listed = store.pending_envelopes(peer)
    # Execute: the first is admitted now, the second dropped.
    resolved = store.resolve_pending(peer, [first], [second.id])
    # Assert
    assert (kept.kept, again.kept) == (1, 2)
    # Oldest page first; within one page, by id.
    later = sorted((second, third), key=lambda r: r.id)
    assert [(p.record_id, p.envelope, p.reason) for p in listed] == [
        (r.id, r.envelope, "unknown-signer") for r in (first, *later)
    ]
    assert (resolved.new, resolved.duplicates) == (1, 0)
    assert [p.record_id for p in store.pending_envelopes(peer)] == [third.id]
    assert store.get_record(first.id) == first and store.get_record(second.id) is None
    assert store.get_peer(peer) is not None and store.get_peer(peer).sync_cursor == "3"  # type: ignore[union-attr]
    assert store.pending_envelopes("c" * 40) == []


def test_a_record_synced_from_two_peers_names_both_first_seen_first(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare
    author, b, c = make_home("Author"), make_home("B"), make_home("C")
    via_b, via_c = _peer(store, b), _peer(store, c)
    shared, local = signed_records(author, 2)
    store.add_records([local])
    # Execute: B serves it first, C later (and C again: still one entry each).
    store.store_sync_page(via_b, [shared], "1")
    time.sleep(0.01)
    store.store_sync_page(via_c, [shared], "1")
    store.store_sync_page(via_c, [shared], "2")
    # Assert
    sources = store.record_sources(shared.id)
    assert [s.peer_id for s in sources] == [via_b, via_c]
    assert sources[0].first_seen_at <= sources[1].first_seen_at
    assert store.record_sources(local.id) == []
    assert store.count_records() == 2
