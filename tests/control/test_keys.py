"""Key rotation and revocation: peers follow a rotated key without a new `peer add`, and
refuse anything new a revoked key signs, relayed or direct."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from gridpoint.node.catalog import sign_record
from gridpoint.node.cli.main import main
from gridpoint.node.control.keys import revoke_live, revoke_with_certificate, rotate
from gridpoint.node.control.statements import sign_revocation, sign_rotation
from gridpoint.node.control.withdraw import withdraw
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.tls import fingerprint, make_tls_material
from gridpoint.node.store.base import Peer
from gridpoint.node.store.sql_store import open_store
from gridpoint.v1 import catalog_pb2, envelope_pb2, statements_pb2
from tests.control.world import World
from tests.helpers import MakeHome, make_record, pin
from tests.inprocess import Node


def _serve(world: World, rogue: Node, *envelopes: bytes) -> None:
    """rogue answers every Sync with exactly these envelopes (relays what it likes)."""
    page = catalog_pb2.SyncPage(
        envelopes=[envelope_pb2.SignedEnvelope.FromString(e) for e in envelopes],
        next_cursor="1",
    )
    world.crafted[rogue.node_id] = lambda *_: page.SerializeToString()


def test_peers_follow_a_rotated_key_and_both_keys_records_verify(world: World) -> None:
    # Prepare: B syncs A; C trusts A (as an author) but syncs only from B.
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(b, c)
    world.trust(c, a)
    old_key, old_id = a.home.identity, a.node_id
    before = world.publish(a, 1)
    world.sync(b, a)
    # Execute: A rotates; its peers sync as usual (no `peer add`).
    done = rotate(a.home, a.store)
    a = world.reload(a)
    after = world.publish(a, 2)
    to_b = world.sync(b, a)
    to_c = world.sync(c, b)
    back = world.sync(a, b)  # B now trusts A's new key: A can pull from B again
    # Assert
    assert (done.old_id, done.new_id) == (old_id, a.node_id)
    for node, report in ((b, to_b), (c, to_c)):
        assert report.statements == 1 and report.refused.total() == 0
        assert {before, after} <= world.ids(node)
        [entry] = [p for p in node.store.list_peers() if p.node_id in (old_id, a.node_id)]
        assert entry.node_id == a.node_id and entry.fingerprint == a.home.tls_fingerprint
    assert b.store.get_record(before).signer_id == old_id  # type: ignore[union-attr]
    assert b.store.get_record(after).signer_id == a.node_id  # type: ignore[union-attr]
    assert back.error is None
    # The retired key signs on: refused, whoever relays it.
    late = sign_record(old_key, make_record(3))
    a.store.add_records([late])
    assert world.sync(b, a).refused["revoked-key"] == 1 and late.id not in world.ids(b)


def test_new_records_of_a_revoked_key_are_refused_direct_and_relayed(world: World) -> None:
    # Prepare: A rotates away from a key a thief holds, then revokes it by certificate.
    a, b, c, thief = world.node("A"), world.node("B"), world.node("C"), world.node("T")
    world.mutual(a, b)
    world.mutual(b, c)
    world.mutual(b, thief)
    world.mutual(c, thief)
    world.trust(c, a)
    stolen = a.home.identity
    pinned = b.store.pinned_fingerprint(stolen.node_id)
    certificate = a.home.revocation_path(stolen.node_id)
    rotate(a.home, a.store)
    a = world.reload(a)
    revoked = revoke_with_certificate(a.home, a.store, certificate)
    world.sync(b, a)
    world.sync(c, b)
    # B answers no call the revoked key signs any more (nor one of a node it never pinned).
    assert pinned is not None
    assert b.store.pinned_fingerprint(stolen.node_id) is None
    assert b.store.pinned_fingerprint(thief.node_id) is not None
    assert b.store.pinned_fingerprint("0" * 64) is None
    # Execute: the thief signs a record, dated before the rotation, and serves it around.
    forged = sign_record(stolen, make_record(9))
    _serve(world, thief, forged.envelope)
    at_b, at_c = world.sync(b, thief), world.sync(c, thief)
    # Assert
    assert revoked.revoked_id == stolen.node_id and not revoked.current
    assert at_b.refused["revoked-key"] == 1 and at_c.refused["revoked-key"] == 1
    assert forged.id not in world.ids(b) | world.ids(c)
    assert world.sync(b, a).error is None  # A's new key is unaffected


def test_revoking_the_live_key_rotates_first(world: World) -> None:
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    old = a.home.identity
    done = revoke_live(a.home, a.store, "laptop lost")
    a = world.reload(a)
    report = world.sync(b, a)
    assert done.rotated is not None and done.revoked_id == old.node_id
    assert report.statements == 2 and report.refused.total() == 0
    assert [p.node_id for p in b.store.list_peers()] == [a.node_id]
    [event] = [e for e in b.store.key_events() if e.node_id == old.node_id]
    assert event.revoked and event.successor_id == a.node_id


def test_bad_key_statements_are_refused_one_line_each_and_change_nothing(world: World) -> None:
    # Prepare: B trusts A and the rogue R, which serves three broken statements.
    a, b, rogue = world.node("A"), world.node("B"), world.node("R")
    world.mutual(a, b)
    world.mutual(b, rogue)
    new = NodeIdentity.generate()
    cert = make_tls_material(new.node_id, "A").cert_pem
    rotation = sign_rotation(a.home.identity, new, cert)
    one_key = envelope_pb2.SignedEnvelope.FromString(rotation.envelope)
    # Only the old key signed: the new key's signature is another message's.
    payload = statements_pb2.KeyRotation.FromString(one_key.payload)
    payload.new_key_signature = new.sign(b"something else")
    one_key = sign_envelope(a.home.identity, payload.SerializeToString(), one_key.payload_type)
    not_theirs = sign_revocation(rogue.home.identity, a.home.identity.public_key, "mine now")
    _serve(world, rogue, one_key.SerializeToString(), not_theirs.envelope)

    def state() -> tuple[object, ...]:
        peers = [(p.node_id, p.fingerprint) for p in b.store.list_peers()]
        return b.store.count_statements(), b.store.key_events(), peers

    before = state()
    # Execute
    report = world.sync(b, rogue)
    # Assert
    assert report.refused["bad-statement"] == 2 and report.statements == 0
    assert state() == before
    assert world.sync(b, a).error is None


def test_a_rotation_of_a_key_not_trusted_yet_is_kept_and_applied_later(world: World) -> None:
    # Prepare: C syncs B, which relays A's rotation; C does not trust A yet.
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(b, c)
    old_id, old_cert = a.node_id, a.home.tls.cert_pem
    rotate(a.home, a.store)
    a = world.reload(a)
    world.sync(b, a)
    kept = world.sync(c, b)
    # Execute: C's operator trusts A as it knew it (its old entry); the next sync applies it.
    c.store.add_peer(
        Peer(old_id, "inprocess:A", "A", fingerprint(old_cert), old_cert, datetime.now(UTC))
    )
    applied = world.sync(c, b)
    # Assert
    assert kept.refused["untrusted-signer"] == 1 and kept.kept == 1
    assert applied.retried == 1 and applied.statements == 1
    assert {p.node_id for p in c.store.list_peers()} == {b.node_id, a.node_id}


def test_a_record_signed_before_the_rotation_still_counts_as_its_authors(world: World) -> None:
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    old = a.home.identity
    first = world.publish(a, 1)
    rotate(a.home, a.store)
    a = world.reload(a)
    world.sync(b, a)  # the rotation, and the record signed before it, arrive together
    done = withdraw(a.home, a.store, [first])  # the new key withdraws the old key's record
    world.sync(b, a)
    assert done.record_ids == (first,) and first not in world.ids(b)
    assert b.store.withdrawals()[0].signer_id == a.node_id != old.node_id


def test_identity_revoke_command(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    a = world.node("A")
    old = a.node_id
    args = ["--home", str(a.home.path), "--db", a.store.url, "identity"]
    assert main([*args, "rotate", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert main([*args, "revoke", "--certificate", str(a.home.config_path)]) == 1
    assert capsys.readouterr().err == "error: this file is not a gridpoint revocation certificate\n"
    certificate = str(a.home.revocation_path(old))
    assert main([*args, "revoke", "--certificate", certificate, "--json"]) == 0
    revoked = json.loads(capsys.readouterr().out)
    assert revoked == {"revoked": old, "current": False, "node_id": rotated["node_id"]}
    assert [e.node_id for e in a.store.key_events() if e.revoked] == [old]


def test_a_peer_whose_key_is_revoked_is_no_longer_pinned(make_home: MakeHome, db_url: str) -> None:
    # Prepare: A pins B and C, and has read B's pin (the key chain is cached).
    a, b, c = make_home("A"), make_home("B"), make_home("C")
    store = open_store(db_url)
    try:
        pin(store, b, "127.0.0.1:1")
        pin(store, c, "127.0.0.1:2")
        before = store.pinned_fingerprint(b.identity.node_id)
        # Execute: B's revocation (no rotation: B's peer row stays) reaches A's store.
        revoke_with_certificate(a, store, b.revocation_path(b.identity.node_id))
        # Assert: calls B's key signs are no longer answered; C's still are.
        assert before == b.tls_fingerprint
        assert store.get_peer(b.identity.node_id) is not None
        assert store.pinned_fingerprint(b.identity.node_id) is None
        assert store.pinned_fingerprint(c.identity.node_id) == c.tls_fingerprint
    finally:
        store.close()


def test_reading_a_pin_fails_as_the_stores_other_reads_do(tmp_path: Path) -> None:
    # Prepare: a SQLite store (whose pin is read in one statement of the driver's own, beside
    # SQLAlchemy) that has lost its peers table.
    store = open_store(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        with store.writing() as conn:
            conn.exec_driver_sql("ALTER TABLE peers RENAME TO peers_gone")
        # Execute / Assert: SQLAlchemy's error, as a read through SQLAlchemy raises.
        for read in (store.pinned_fingerprint, store.get_peer):
            with pytest.raises(OperationalError, match="no such table: peers"):
                read("a" * 40)
    finally:
        store.close()
