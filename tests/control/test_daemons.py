"""The owner's control with real daemons over mutual TLS: a peer follows a rotated key (its
TLS pin included) with no `peer add`, a withdrawal reaches it, and the ledger says what left."""

from __future__ import annotations

import socket

import pytest

from gridpoint.node.catalog import publish
from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import open_store
from tests.cli_main import run_main
from tests.helpers import Daemon, MakeHome, make_record, pin, set_sync

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _publish(home: NodeHome, i: int) -> str:
    store = open_store(home.db_url())
    try:
        return publish(store, NodeHome(home.path).identity, make_record(i)).id
    finally:
        store.close()


def _quiet(home: NodeHome) -> NodeHome:
    """The home with its daemon's own sync loop off: the test's syncs are the only ones."""
    return set_sync(home, interval_s=0.0)


def test_a_peer_follows_a_rotation_over_tls_and_hears_of_a_withdrawal(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: A and B trust each other; B holds A's first record.
    a, b = _quiet(make_home("A")), _quiet(make_home("B"))
    listen = f"127.0.0.1:{_free_port()}"
    da, db = Daemon.start(a, listen=listen), Daemon.start(b)
    daemons += [da, db]
    for x, y, address in ((a, b, db.address), (b, a, da.address)):
        store = open_store(x.db_url())
        pin(store, y, address)
        store.close()
    first = _publish(a, 1)
    old_id = a.identity.node_id
    assert run_main(capsys, "catalog", "sync", "--json", home=b.path).json()[0]["new"] == 1
    # Execute: A rotates (daemon stopped, then started on the same address).
    assert da.stop() == 0
    rotated = run_main(capsys, "identity", "rotate", "--json", home=a.path).json()
    da = Daemon.start(a, listen=listen)
    daemons.append(da)
    # By the old pin: A answers by SNI.
    followed = run_main(capsys, "catalog", "sync", "--json", home=b.path).json()
    second = _publish(a, 2)
    again = run_main(capsys, "catalog", "sync", "--json", home=b.path).json()  # by the new pin
    withdrawn = run_main(
        capsys, "catalog", "withdraw", first, "--reason", "test", "--json", home=a.path
    ).json()
    told = run_main(capsys, "catalog", "sync", "--json", home=b.path).json()
    listed = run_main(capsys, "catalog", "query", "--withdrawn", "--json", home=b.path).json()
    audit = run_main(capsys, "audit", "--peer", b.identity.node_id, "--json", home=a.path).json()
    # B's daemon accepts A's new key.
    pulled = run_main(capsys, "catalog", "sync", "--json", home=a.path).json()
    # Assert
    store = open_store(b.db_url())
    peers, ids = store.list_peers(), {r.id for r in store.query(None, limit=10)}
    store.close()
    assert rotated["old_node_id"] == old_id and rotated["node_id"] != old_id
    assert followed[0]["error"] is None and followed[0]["statements"] == 1
    assert [(p.node_id, p.fingerprint) for p in peers] == [
        (rotated["node_id"], rotated["fingerprint"])
    ]
    assert again[0]["error"] is None and again[0]["new"] == 1
    assert withdrawn["withdrawn"] == [first] and told[0]["statements"] == 1
    assert [w["id"] for w in listed] == [first] and listed[0]["reason"] == "test"
    assert ids == {second}
    sent = {(e["kind"], e["item"]) for e in audit}
    assert {("record", first), ("record", second)} <= sent
    assert ("statement", withdrawn["tombstones"][0]) in sent
    assert pulled[0]["error"] is None
    assert "Traceback" not in da.log() + db.log()
