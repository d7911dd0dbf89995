"""Sync, relay, live query and refusals through the in-process transport (no processes).

The same NodeService the gRPC server wraps answers here, with requests signed and
authenticated over their exact bytes; only TLS and sockets are left to test_network.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpoint.errors import PeerRefused
from gridpoint.node.catalog import sign_record
from gridpoint.node.peers.inprocess import InProcessTransport
from gridpoint.node.peers.live_query import LOCAL, run_query
from gridpoint.node.peers.sync import sync_all, sync_peer
from gridpoint.v1 import envelope_pb2
from tests.helpers import make_record, signed_records
from tests.inprocess import Network, Node


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    network = Network(tmp_path)
    yield network
    network.close()


def ids(node: Node) -> set[str]:
    return {r.id for r in node.store.query(None, limit=100_000)}


def mutual(net: Network, a: Node, b: Node) -> None:
    net.trust(a, b)
    net.trust(b, a)


def test_sync_pulls_every_page_once_and_a_second_sync_finds_nothing_new(net: Network) -> None:
    # Prepare: B holds 23 records; A pages through them 5 at a time.
    a, b = net.add("A", page_size=5), net.add("B")
    mutual(net, a, b)
    b.store.add_records(signed_records(b.home, 23))
    peer = a.store.get_peer(b.node_id)
    assert peer is not None and a.home.config.sync.page_size == 5
    # Execute
    first = sync_peer(a.home, a.store, peer, net.connector(a))
    again = sync_all(a.home, a.store, net.connector(a))
    # Assert
    assert (first.new, first.error) == (23, None)
    assert (again[0].new, again[0].duplicates, again[0].error) == (0, 0, None)
    assert ids(a) == ids(b)


def test_untrusted_and_tampered_records_are_refused_by_reason_and_the_rest_stored(
    net: Network,
) -> None:
    # Prepare: B serves 3 good records, one tampered, one by X whom A does not trust.
    a, b, x = net.add("A"), net.add("B"), net.add("X")
    mutual(net, a, b)
    good = signed_records(b.home, 3)
    tampered = sign_record(b.home.identity, make_record(99))
    env = envelope_pb2.SignedEnvelope.FromString(tampered.envelope)
    env.payload = env.payload.replace(b"bert-base-uncased", b"bert-base-uncasex")
    forged = type(tampered)(**{**tampered.__dict__, "envelope": env.SerializeToString()})
    b.store.add_records([good[0], sign_record(x.home.identity, make_record(50)), forged, *good[1:]])
    # Execute
    [report] = sync_all(a.home, a.store, net.connector(a))
    # Assert
    assert report.new == 3
    assert dict(report.refused) == {"untrusted-signer": 1, "bad-signature": 1}
    assert ids(a) == {r.id for r in good}


def test_a_relayed_record_is_admitted_only_when_its_author_is_trusted(net: Network) -> None:
    # Prepare: X's records reach B; C syncs from B before and after it trusts X.
    x, b, c = net.add("X"), net.add("B"), net.add("C")
    b.store.add_records(signed_records(x.home, 2))
    mutual(net, b, c)
    # Execute
    [before] = sync_all(c.home, c.store, net.connector(c))
    net.trust(c, x)
    after = sync_peer(c.home, c.store, c.store.get_peer(b.node_id), net.connector(c))  # type: ignore[arg-type]
    # Assert
    assert before.new == 0 and dict(before.refused) == {"untrusted-signer": 2}
    assert {r.signer_id for r in c.store.query(None, limit=10)} <= {x.node_id}
    assert after.error is None


def test_a_peer_that_does_not_trust_us_refuses_with_permission_denied(net: Network) -> None:
    # Prepare: A trusts B, B does not trust A.
    a, b = net.add("A"), net.add("B")
    net.trust(a, b)
    b.store.add_records(signed_records(b.home, 2))
    # Execute
    [report] = sync_all(a.home, a.store, net.connector(a))
    transport = InProcessTransport(a.home.identity, "inprocess:B", b.node_id, b.service.handle)
    # Assert
    assert report.new == 0 and report.error is not None and "refused us" in report.error
    with pytest.raises(PeerRefused, match="permission_denied"):
        transport.sync_page("", 10)
    assert ids(a) == set()


def test_hello_is_checked_against_the_node_the_transport_was_opened_for(net: Network) -> None:
    # Prepare: A asks B's service while believing it talks to C.
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    mutual(net, a, b)
    honest = InProcessTransport(a.home.identity, "b", b.node_id, b.service.handle)
    impostor = InProcessTransport(a.home.identity, "c", c.node_id, b.service.handle)
    # Execute / Assert
    assert honest.hello().name == "B"
    with pytest.raises(Exception, match="bad identity"):
        impostor.hello()


def test_live_query_merges_peers_keeps_provenance_and_names_a_peer_that_is_down(
    net: Network,
) -> None:
    # Prepare: A and B share one record; B has one more; C is down.
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    mutual(net, a, b)
    mutual(net, a, c)
    shared, only_b = signed_records(b.home, 2)
    a.store.add_records([shared])
    b.store.add_records([shared, only_b])
    net.down.add(c.node_id)
    # Execute
    result = run_query(
        a.home, a.store, "metrics.accuracy > 0", limit=10, order_by="", connect=net.connector(a)
    )
    # Assert
    found = {row.record.id: row.found_at for row in result.rows}
    assert found == {shared.id: [LOCAL, b.node_id], only_b.id: [b.node_id]}
    assert list(result.unanswered) == [c.node_id]
    assert result.refused == 0


def test_live_query_without_a_connector_reads_only_the_local_catalog(net: Network) -> None:
    a, b = net.add("A"), net.add("B")
    mutual(net, a, b)
    b.store.add_records(signed_records(b.home, 3))
    result = run_query(a.home, a.store, "", limit=10, order_by="")
    assert result.rows == [] and result.unanswered == {}


def test_a_record_offered_by_three_peers_is_downloaded_whole_once(net: Network) -> None:
    # Prepare: B, C and D all hold X's record; A trusts X's key and syncs from B, C and D.
    a, x = net.add("A"), net.add("X")
    relays = [net.add(name) for name in ("B", "C", "D")]
    net.trust(a, x)
    record = signed_records(x.home, 1)
    for relay in relays:
        mutual(net, a, relay)
        relay.store.add_records(record)
    # Execute: one peer after the other, as rounds that do not overlap.
    reports = []
    for relay in relays:
        peer = a.store.get_peer(relay.node_id)
        assert peer is not None
        reports.append(sync_peer(a.home, a.store, peer, net.connector(a)))
    # Assert: the first peer sent it whole; the others only named it.
    received = [(r.received, r.new, r.error) for r in reports]
    assert received == [(1, 1, None), (0, 0, None), (0, 0, None)]
    assert ids(a) == {record[0].id}
