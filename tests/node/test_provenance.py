"""Provenance: the store remembers which trusted peers sync found each record at, in process
(real service, store and sync code; the in-process transport between them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpoint.node.peers.sync import SyncLimits, SyncReport, sync_peer
from tests.helpers import signed_records
from tests.inprocess import Network, Node


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    network = Network(tmp_path)
    yield network
    network.close()


def pull(net: Network, node: Node, peer: Node) -> SyncReport:
    stored = node.store.get_peer(peer.node_id)
    assert stored is not None
    return sync_peer(node.home, node.store, stored, net.connector(node), SyncLimits())


def test_a_record_lists_every_peer_that_served_it_first_seen_first(net: Network) -> None:
    # Prepare: A publishes; B relays A's records; C trusts both.
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    records = signed_records(a.home, 2)
    a.store.add_records(records)
    b.store.add_records(records[:1])
    for x, y in [(c, a), (c, b), (a, c), (b, c)]:
        net.trust(x, y)
    # Execute: C syncs from B, then from A (the author), then from B again.
    pull(net, c, b)
    pull(net, c, a)
    pull(net, c, b)
    # Assert: the relayed record names B then A, once each; the other only A.
    assert [s.peer_id for s in c.store.record_sources(records[0].id)] == [b.node_id, a.node_id]
    assert [s.peer_id for s in c.store.record_sources(records[1].id)] == [a.node_id]
    # A record published on the node itself was found at no peer.
    assert a.store.record_sources(records[0].id) == []
    assert c.store.record_sources("0" * 64) == []
