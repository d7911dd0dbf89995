"""Introductions: a trusted peer vouches for an author, and a node that follows vouches (only
under [introductions] max_depth, only by sync) takes in that author's records."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gridpoint.errors import BadSignature, BadStatement, ConfigError, RequestError, UnknownSigner
from gridpoint.node.catalog import publish
from gridpoint.node.config import NodeConfig
from gridpoint.node.control.gate import Gate
from gridpoint.node.control.introductions import in_force, introductions
from gridpoint.node.control.statements import VOUCH_TYPE, sign_unvouch, sign_vouch
from gridpoint.node.control.vouching import listing, unvouch, vouch
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.sync import sync_all
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.record_views import introduction_text, record_view
from gridpoint.node.store.control_base import StoredStatement, VouchEntry
from gridpoint.node.store.key_chain import KeyChain
from gridpoint.node.ui.app import create_app
from gridpoint.v1 import envelope_pb2, statements_pb2
from tests.cli_main import run_main
from tests.control.world import World
from tests.helpers import make_record
from tests.inprocess import Network, Node


def _follow(world: World, node: Node, max_depth: int) -> Node:
    """The node with [introductions] max_depth set in its config.toml (read again)."""
    path = node.home.config_path
    text = path.read_text()
    start = text.index("[introductions]")
    line = text.index("max_depth = ", start)
    end = text.index("\n", line)
    path.write_text(f"{text[:line]}max_depth = {max_depth}{text[end:]}")
    return world.reload(node)


def _envelope(raw: bytes) -> envelope_pb2.SignedEnvelope:
    return envelope_pb2.SignedEnvelope.FromString(raw)


def _relay(world: World) -> tuple[Node, Node, Node]:
    """A (an author C does not trust), B (trusts A, vouches for it), C (trusts only B)."""
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(b, c)
    return a, b, c


def test_a_vouched_author_is_taken_in_only_when_the_node_follows_introductions(
    world: World,
) -> None:
    # Prepare: B vouches for A; C does not follow introductions (the default).
    a, b, c = _relay(world)
    first = world.publish(a, 1)
    world.sync(b, a)
    done = vouch(b.home, b.store, "A", note="our partner lab")
    # Execute: C syncs with the setting off, then on.
    off = world.sync(c, b)
    held_off = world.ids(c)
    c = _follow(world, c, 1)
    on = world.sync(c, b)
    second = world.publish(a, 2)
    world.sync(b, a)
    later = world.sync(c, b)
    # Assert: off, the vouch is kept (and relayed on) but A's record refused; on, A's
    # records are taken in, their provenance naming the voucher.
    assert done.author_id == a.node_id and done.depth == 1
    assert off.statements == 1 and off.refused["untrusted-signer"] == 1
    assert first not in held_off
    assert on.retried == 1 and {first, second} <= world.ids(c) and later.new == 1
    view = record_view(c.home, c.store, first)
    assert view.standing == "vouched" and view.introduction is not None
    assert view.introduction.voucher_id == b.node_id
    assert introduction_text(view) == "vouched by B (depth 1)"
    assert introduction_text(record_view(c.home, c.store, first[:12])) == "vouched by B (depth 1)"
    # A trusted author's record needs no introduction: nothing is said.
    assert introduction_text(record_view(b.home, b.store, first)) == ""
    # Nor is A a peer of C: federation membership and live queries follow peers only.
    assert a.node_id not in {p.node_id for p in c.store.list_peers()}
    found = listing(c.home, c.store)
    assert [(i.author_id, i.voucher_id, i.depth) for i in found.introduced] == [
        (a.node_id, b.node_id, 1)
    ]
    assert [(e.author_id, e.note) for e in listing(b.home, b.store).own] == [
        (a.node_id, "our partner lab")
    ]


def test_live_queries_never_take_a_vouched_only_author(world: World) -> None:
    # Prepare: C follows introductions and took in A's first record by sync.
    a, b, c = _relay(world)
    c = _follow(world, c, 1)
    world.publish(a, 1)
    world.sync(b, a)
    vouch(b.home, b.store, a.node_id)
    world.sync(c, b)
    fresh = world.publish(a, 2)
    world.sync(b, a)
    # Execute: C asks B live for everything; B answers with A's new record.
    result = world.query(c)
    # Assert: refused live (A is not a trusted peer of C), though sync would take it.
    assert fresh not in {row.record.id for row in result.rows}
    assert result.refused >= 1
    assert world.sync(c, b).new == 1 and fresh in world.ids(c)


def _chain(world: World, b_depth: int) -> tuple[Node, Node, Node, Node]:
    """B vouches for A (reaching b_depth), A vouches for D; B trusts A and D, C trusts B."""
    a, b, c = _relay(world)
    d = world.node("D")
    world.mutual(b, d)
    world.trust(a, d)
    vouch(b.home, b.store, a.node_id, depth=b_depth)
    vouch(a.home, a.store, d.node_id)
    world.publish(d, 7)
    world.sync(b, a)
    world.sync(b, d)
    return a, b, c, d


@pytest.mark.parametrize(
    ("b_depth", "max_depth", "taken"),
    [(1, 2, False), (2, 1, False), (2, 2, True), (3, 2, True)],
)
def test_an_introduction_reaches_no_further_than_both_the_vouch_and_the_node_allow(
    world: World, b_depth: int, max_depth: int, taken: bool
) -> None:
    # Prepare
    a, b, c, d = _chain(world, b_depth)
    c = _follow(world, c, max_depth)
    # Execute
    report = world.sync(c, b)
    # Assert: D is at depth 2, through A's vouch (A, not a peer of C, named by its short id).
    [by_d] = [r.id for r in b.store.query(None, limit=100) if r.signer_id == d.node_id]
    assert (by_d in world.ids(c)) is taken
    if taken:
        text = introduction_text(record_view(c.home, c.store, by_d))
        assert text == f"vouched by {a.node_id[:12]} (depth 2)"
    else:
        # A's vouch (or D's record) is refused, and kept for later.
        assert report.refused["untrusted-signer"] >= 1


def test_unvouching_or_losing_trust_in_the_voucher_stops_new_records_and_keeps_old_ones(
    world: World,
) -> None:
    # Prepare: C took in A's first record through B's vouch.
    a, b, c = _relay(world)
    c = _follow(world, c, 1)
    first = world.publish(a, 1)
    world.sync(b, a)
    vouch(b.home, b.store, "A")
    world.sync(c, b)
    # Execute: B withdraws its vouch; A publishes again.
    done = unvouch(b.home, b.store, "A", reason="they left the consortium")
    second = world.publish(a, 2)
    world.sync(b, a)
    report = world.sync(c, b)
    # Assert: the old record is kept and says so, the new one refused.
    assert done.depth == 0 and report.statements == 1
    assert first in world.ids(c) and second not in world.ids(c)
    assert report.refused["untrusted-signer"] == 1
    view = record_view(c.home, c.store, first)
    assert view.standing == "unvouched" and "new records refused" in introduction_text(view)
    with pytest.raises(RequestError, match="does not vouch for"):
        unvouch(b.home, b.store, a.node_id)
    # A vouch again (signed later) is in force again: the record kept for retry is taken in
    # at the start of the next round.
    vouch(b.home, b.store, "A")
    assert world.sync(c, b).statements == 1
    assert world.sync(c, b).retried == 1 and second in world.ids(c)
    # C stops trusting B: nothing B introduced counts any more.
    assert c.store.remove_peer(b.node_id)
    assert Gate.load(c.store, c.node_id, 1).introduction(a.node_id) is None


def test_a_revoked_voucher_introduces_no_one(world: World) -> None:
    # Prepare
    a, b, c = _relay(world)
    c = _follow(world, c, 1)
    vouch(b.home, b.store, a.node_id)
    world.sync(c, b)
    assert Gate.load(c.store, c.node_id, 1).introduction(a.node_id) is not None
    # Execute: B's key is revoked by its certificate (signed by the key itself).
    from gridpoint.node.control.keys import revoke_with_certificate

    revoke_with_certificate(b.home, b.store, b.home.revocation_path(b.node_id))
    world.sync(c, b)
    # Assert
    assert Gate.load(c.store, c.node_id, 1).introduction(a.node_id) is None


def test_bad_vouches_are_refused_with_their_reason(world: World) -> None:
    # Prepare: C trusts B and follows introductions; A is vouched by no one.
    a, b, c = _relay(world)
    c = _follow(world, c, 1)
    gate = Gate.load(c.store, c.node_id, 1)
    good = _envelope(sign_vouch(b.home.identity, a.node_id, 1, "").envelope)
    forged = envelope_pb2.SignedEnvelope()
    forged.CopyFrom(good)
    forged.payload = statements_pb2.Vouch(
        schema_version=1, author_id=c.node_id, depth=1
    ).SerializeToString()

    def crafted(
        author_id: str, depth: int, at: int = 1_700_000_000_000
    ) -> envelope_pb2.SignedEnvelope:
        payload = statements_pb2.Vouch(
            schema_version=1, author_id=author_id, depth=depth, issued_at_unix_ms=at
        ).SerializeToString()
        return sign_envelope(b.home.identity, payload, VOUCH_TYPE, signed_at_ms=1_700_000_000_000)

    # Execute / Assert
    assert gate.admit(good).signer_id == b.node_id
    with pytest.raises(BadSignature):
        gate.admit(forged)
    with pytest.raises(BadStatement, match="vouches for itself"):
        gate.admit(crafted(b.node_id, 1))
    with pytest.raises(BadStatement, match="40 lowercase hex"):
        gate.admit(crafted("A", 1))
    with pytest.raises(BadStatement, match="reaches 1 to 8 hops; this one says 9"):
        gate.admit(crafted(a.node_id, 9))
    with pytest.raises(BadStatement, match="reaches 1 to 8 hops; this one says 0"):
        gate.admit(crafted(a.node_id, 0))
    with pytest.raises(BadStatement, match="issued_at_unix_ms must be its envelope's signing"):
        gate.admit(crafted(a.node_id, 1, at=1))
    # A vouch by an author no one introduced, or whose introduction reaches no further.
    by_a = _envelope(sign_vouch(a.home.identity, "d" * 40, 1, "").envelope)
    with pytest.raises(UnknownSigner, match="neither trusts nor follows"):
        gate.admit(by_a)
    admitted = gate.admit(good)
    assert isinstance(admitted, StoredStatement)
    c.store.add_statements([admitted])
    with pytest.raises(UnknownSigner, match="introduced here at depth 1"):
        gate.reload().admit(by_a)
    # An unvouch by an unknown key is refused too.
    with pytest.raises(UnknownSigner):
        Gate.load(c.store, c.node_id).admit(
            _envelope(sign_unvouch(world.node("E").home.identity, a.node_id, "").envelope)
        )


def test_vouching_for_oneself_or_an_unknown_peer_is_refused(world: World) -> None:
    a, b, _ = _relay(world)
    with pytest.raises(RequestError, match="cannot vouch for itself"):
        vouch(b.home, b.store, b.node_id)
    with pytest.raises(Exception, match="no trusted peer matches 'nobody'"):
        vouch(b.home, b.store, "nobody")
    with pytest.raises(RequestError, match="--depth must be 1 to 8"):
        vouch(b.home, b.store, a.node_id, depth=9)


@pytest.mark.parametrize("value", ["-1", "9", '"two"'])
def test_a_bad_max_depth_names_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[node]\nname = "x"\n[introductions]\nmax_depth = {value}\n')
    with pytest.raises(ConfigError, match=r"introductions\.max_depth"):
        NodeConfig.load(path)


def test_the_command_line_and_the_record_page_show_who_vouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: B vouches for A on the command line; C follows introductions and syncs B.
    net = Network(tmp_path / "net")
    a, b = net.pair("A", "B")
    c = net.add("C")
    net.trust(c, b)
    net.trust(b, c)
    record_id = publish(a.store, a.home.identity, make_record(3)).id
    sync_all(b.home, b.store, net.connector(b), only=a.node_id)
    ran = run_main(capsys, "trust", "vouch", "A", "--note", "partner", "--json", home=b.home.path)
    listed = run_main(capsys, "trust", "list", "--json", home=b.home.path).json()
    _follow_home(c.home.config_path, 1)
    [report] = sync_all(NodeHome(c.home.path), c.store, net.connector(c), only=b.node_id)
    # Execute
    shown = run_main(capsys, "catalog", "show", record_id[:12], "--json", home=c.home.path).json()
    text = run_main(capsys, "catalog", "show", record_id[:12], home=c.home.path).stdout
    c_list = run_main(capsys, "trust", "list", home=c.home.path).stdout
    again = run_main(capsys, "trust", "vouch", b.node_id, home=b.home.path)
    with TestClient(
        create_app(NodeHome(c.home.path), c.store, db_url="sqlite://"), base_url="http://127.0.0.1"
    ) as ui:
        page = ui.get(f"/record/{record_id}").text
    net.close()
    # Assert
    assert ran.json()["author"] == a.node_id and report.new == 1
    assert [v["author"] for v in listed["vouches"]] == [a.node_id]
    assert listed["max_depth"] == 0 and listed["introduced"] == []
    assert shown["author_standing"] == "vouched"
    assert shown["vouched_by"]["voucher"] == b.node_id and shown["vouched_by"]["depth"] == 1
    assert "vouched by B (depth 1)" in text and "vouched by B (depth 1)" in page
    assert a.node_id in c_list
    assert again.returncode == 1 and "cannot vouch for itself" in again.stderr


def _follow_home(path: Path, max_depth: int) -> None:
    path.write_text(path.read_text().replace("max_depth = 0", f"max_depth = {max_depth}"))


def _entry(voucher: str, author: str, depth: int, at: int = 1) -> VouchEntry:
    return VouchEntry(voucher * 40, author * 40, depth, at, f"{voucher}{author}{at}".ljust(64, "0"))


def test_introductions_follow_the_best_chain_and_end_in_a_cycle() -> None:
    # Prepare: trusted T vouches for a (reach 3); a, b and c vouch round in a cycle; an
    # unvouch of c by b, signed later, is the one in force.
    chain = KeyChain([])
    entries = [
        _entry("f", "a", 3),
        _entry("a", "b", 8),
        _entry("b", "c", 8),
        _entry("c", "a", 8),
        _entry("b", "d", 1),
        _entry("b", "c", 0, at=2),
    ]
    trusted = {"f" * 40}.__contains__
    # Execute
    found = introductions(entries, trusted, chain, 8)
    shallow = introductions(entries, trusted, chain, 1)
    # Assert
    assert {k[0]: (v.depth, v.reach) for k, v in found.items()} == {
        "a": (1, 2),
        "b": (2, 1),
        "d": (3, 0),
    }
    assert set(shallow) == {"a" * 40}
    assert introductions(entries, trusted, chain, 0) == {}
    assert in_force([_entry("a", "b", 0, at=2), _entry("a", "b", 2, at=1)], chain) == []
