"""A trusted peer that misbehaves, in process: sync always ends, costs a bounded amount, keeps
nothing unsigned, and never stops the node from syncing with its other peers.

A crafted peer is a handler function answering Catalog.Sync with pages made here; the node
under test is real (its service, store and sync code). test_hostile_peer.py drives the same
defects through real daemons over mutual TLS.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gridpoint.node.catalog import MAX_RECORD_BYTES, sign_record
from gridpoint.node.logs import LOG_BURST, MAX_LOG_VALUE_CHARS, configure_logging
from gridpoint.node.peers.live_query import run_query
from gridpoint.node.peers.sync import SyncLimits, SyncReport, sync_all, sync_peer
from gridpoint.node.protocol.envelope import MAX_FUTURE_S, canonical_envelope, now_ms
from gridpoint.node.protocol.methods import SYNC
from gridpoint.node.store import sql_pending
from gridpoint.v1 import catalog_pb2, envelope_pb2, records_pb2
from tests.helpers import crafted_envelope, make_record, signed_records
from tests.inprocess import Network, Node

Page = tuple[list[envelope_pb2.SignedEnvelope], str, bool]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    network = Network(tmp_path)
    yield network
    network.close()


@pytest.fixture
def json_log() -> Iterator[Callable[[], str]]:
    """The node's JSON log lines written during the test (as configured, into a buffer)."""
    configure_logging()
    logger = logging.getLogger("gridpoint")
    [handler] = logger.handlers
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer.getvalue
    logger.handlers[:] = []
    logger.propagate = True


def serve(net: Network, peer: Node, pages: Callable[[str], Page]) -> list[str]:
    """Makes peer answer Sync with pages(cursor); returns the cursors it was asked for."""
    asked: list[str] = []

    def handler(method: str, raw: bytes, _auth: bytes | None, _tls: str | None) -> bytes:
        assert method == SYNC
        cursor = catalog_pb2.SyncRequest.FromString(raw).cursor
        asked.append(cursor)
        envelopes, next_cursor, has_more = pages(cursor)
        return catalog_pb2.SyncPage(
            envelopes=envelopes, next_cursor=next_cursor, has_more=has_more
        ).SerializeToString()

    net.crafted[peer.node_id] = handler
    return asked


def one_page(envelopes: list[envelope_pb2.SignedEnvelope]) -> Callable[[str], Page]:
    return lambda cursor: (envelopes, "1", False) if cursor == "" else ([], cursor, False)


def pull(net: Network, node: Node, peer: Node, limits: SyncLimits | None = None) -> SyncReport:
    stored = node.store.get_peer(peer.node_id)
    assert stored is not None
    return sync_peer(node.home, node.store, stored, net.connector(node), limits or SyncLimits())


def ids(node: Node) -> set[str]:
    return {r.id for r in node.store.query(None, limit=100_000)}


def envelope_of(record: object) -> envelope_pb2.SignedEnvelope:
    return envelope_pb2.SignedEnvelope.FromString(record.envelope)  # type: ignore[attr-defined]


def test_a_valid_looking_but_unstorable_record_is_refused_alone_and_the_cursor_moves_on(
    net: Network,
) -> None:
    # Prepare: H signs a record with num_parameters = 2**63 (over BIGINT) between two good ones.
    a, h = net.add("A"), net.add("H")
    net.trust(a, h)
    good = signed_records(h.home, 2)

    def too_big(m: records_pb2.RunRecord) -> None:
        m.model.num_parameters = 2**63

    bad = crafted_envelope(h.home, 9, mutate=too_big)
    serve(net, h, one_page([envelope_of(good[0]), bad, envelope_of(good[1])]))
    # Execute
    first = pull(net, a, h)
    again = pull(net, a, h)
    # Assert
    assert (first.new, dict(first.refused), first.error) == (2, {"invalid-envelope": 1}, None)
    assert ids(a) == {r.id for r in good}
    assert a.store.get_peer(h.node_id).sync_cursor == "1"  # type: ignore[union-attr]
    assert (again.new, sum(again.refused.values()), again.error) == (0, 0, None)


def test_an_unexpected_failure_with_one_peer_is_its_report_and_the_others_still_sync(
    net: Network,
) -> None:
    # Prepare: H's answers raise something no transport maps; B is honest.
    a, b, h = net.add("A"), net.add("B"), net.add("H")
    net.trust(a, b)
    net.trust(a, h)
    net.trust(b, a)

    def broken(*_args: object) -> bytes:
        raise ZeroDivisionError("a bug in a peer's answer path")

    net.crafted[h.node_id] = broken
    b.store.add_records(signed_records(b.home, 7))
    # Execute
    reports = {r.peer_id: r for r in sync_all(a.home, a.store, net.connector(a))}
    # Assert
    error = reports[h.node_id].error
    assert error is not None and "unexpectedly" in error
    assert "ZeroDivisionError" in error
    assert (reports[b.node_id].new, reports[b.node_id].error) == (7, None)
    assert ids(a) == ids(b)


def test_a_peer_whose_cursor_does_not_advance_is_stopped_after_one_page(net: Network) -> None:
    # Prepare: H always says "more" and hands back the same cursor.
    a, b, h = net.add("A"), net.add("B"), net.add("H")
    net.trust(a, b)
    net.trust(a, h)
    net.trust(b, a)
    b.store.add_records(signed_records(b.home, 3))
    record = envelope_of(signed_records(h.home, 1)[0])
    asked = serve(net, h, lambda _cursor: ([record], "7", True))
    # Execute
    reports = {r.peer_id: r for r in sync_all(a.home, a.store, net.connector(a))}
    # Assert
    stuck = reports[h.node_id]
    assert stuck.error is not None and "cursor did not advance" in stuck.error
    assert len(asked) <= 3 and stuck.pages == 2
    assert reports[b.node_id].new == 3
    assert ids(a) == ids(b) | {signed_records(h.home, 1)[0].id}


@pytest.mark.parametrize(
    ("limits", "stopped", "pages"),
    [(SyncLimits(max_pages=25), "max-pages", 25), (SyncLimits(max_records=10), "max-records", 4)],
)
def test_endless_pages_stop_at_the_round_bounds_and_the_next_round_resumes(
    net: Network, limits: SyncLimits, stopped: str, pages: int
) -> None:
    # Prepare: H always has 3 more (genuine, new) records after any cursor.
    a, h = net.add("A"), net.add("H")
    net.trust(a, h)
    made: dict[str, list[envelope_pb2.SignedEnvelope]] = {}

    def endless(cursor: str) -> Page:
        n = int(cursor or 0)
        made.setdefault(cursor, [envelope_of(r) for r in signed_records(h.home, 3, 3 * n)])
        return made[cursor], str(n + 1), True

    serve(net, h, endless)
    # Execute
    first = pull(net, a, h, limits)
    cursor = a.store.get_peer(h.node_id).sync_cursor  # type: ignore[union-attr]
    second = pull(net, a, h, limits)
    # Assert
    assert (first.stopped, first.pages, first.new, first.error) == (stopped, pages, 3 * pages, None)
    assert cursor == str(pages)
    assert (second.new, second.duplicates) == (3 * pages, 0)


def test_a_slow_peer_is_cut_at_its_deadline_while_the_others_sync(net: Network) -> None:
    # Prepare: H takes 0.2 s per page, forever; B is honest.
    a, b, h = net.add("A", page_size=2), net.add("B"), net.add("H")
    net.trust(a, b)
    net.trust(a, h)
    net.trust(b, a)
    b.store.add_records(signed_records(b.home, 20))
    record = envelope_of(signed_records(h.home, 1)[0])

    def slow(cursor: str) -> Page:
        time.sleep(0.2)
        return [record], str(int(cursor or 0) + 1), True

    serve(net, h, slow)
    # Execute
    start = time.monotonic()
    reports = {
        r.peer_id: r
        for r in sync_all(a.home, a.store, net.connector(a), limits=SyncLimits(deadline_s=1.0))
    }
    elapsed = time.monotonic() - start
    # Assert
    cut = reports[h.node_id]
    assert cut.stopped == "deadline" or (cut.error or "").endswith("ran out")
    assert 3 <= cut.pages <= 7 and elapsed < 2.5
    assert (reports[b.node_id].new, reports[b.node_id].error) == (20, None)


@pytest.mark.parametrize("cursor", ["9" * 65, "1\x002", "١٢", "two words"])
def test_a_cursor_the_store_cannot_keep_fails_the_round_and_stores_nothing_of_its_page(
    net: Network, cursor: str
) -> None:
    a, h = net.add("A"), net.add("H")
    net.trust(a, h)
    records = signed_records(h.home, 2)
    serve(net, h, lambda _c: ([envelope_of(r) for r in records], cursor, False))
    report = pull(net, a, h)
    assert report.error is not None and "cursor" in report.error
    assert ids(a) == set()
    assert a.store.get_peer(h.node_id).sync_cursor == ""  # type: ignore[union-attr]


def test_records_relayed_before_their_author_was_trusted_arrive_once_it_is(net: Network) -> None:
    # Prepare: B relays two records by X, whom C does not trust yet.
    x, b, c = net.add("X"), net.add("B"), net.add("C")
    relayed = signed_records(x.home, 2)
    b.store.add_records(relayed)
    net.trust(c, b)
    net.trust(b, c)
    # Execute: sync, trust X, sync again (B has nothing new: its cursor is past them).
    before = pull(net, c, b)
    net.trust(c, x)
    after = pull(net, c, b)
    # Assert
    assert (before.new, dict(before.refused), before.kept) == (0, {"untrusted-signer": 2}, 2)
    assert (after.new, after.retried, after.pages) == (2, 2, 1)
    assert ids(c) == {r.id for r in relayed}
    assert c.store.pending_envelopes(b.node_id) == []


def test_a_record_signed_a_little_ahead_of_our_clock_is_admitted_once_it_is_due(
    net: Network,
) -> None:
    a, h = net.add("A"), net.add("H")
    net.trust(a, h)
    ahead = crafted_envelope(h.home, signed_at_ms=now_ms() + int(MAX_FUTURE_S * 1000) + 1500)
    serve(net, h, one_page([ahead]))
    early = pull(net, a, h)
    time.sleep(2)
    due = pull(net, a, h)
    assert (early.new, dict(early.refused), early.kept) == (0, {"clock-out-of-window": 1}, 1)
    assert (due.new, due.retried) == (1, 1)


def test_only_refusals_that_can_pass_are_kept_and_never_beyond_the_bound(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: H serves 5 records by strangers and one with a broken signature.
    monkeypatch.setattr(sql_pending, "MAX_PENDING_PER_PEER", 3)
    a, h = net.add("A"), net.add("H")
    net.trust(a, h)
    strangers = [crafted_envelope(net.add(f"S{i}").home) for i in range(5)]
    forged = crafted_envelope(h.home)
    forged.signature = bytes(64)
    serve(net, h, one_page([*strangers, forged]))
    # Execute
    report = pull(net, a, h)
    # Assert
    assert dict(report.refused) == {"untrusted-signer": 5, "bad-signature": 1}
    assert report.kept == 3 and len(a.store.pending_envelopes(h.node_id)) == 3


def test_fields_a_relay_adds_to_a_genuine_envelope_are_neither_stored_nor_served(
    net: Network,
) -> None:
    # Prepare: H relays B's genuine envelope with an unknown field (number 99) appended.
    a, b, h, d = net.add("A"), net.add("B"), net.add("H"), net.add("D")
    net.trust(a, b)
    net.trust(a, h)
    net.trust(d, a)
    net.trust(a, d)
    net.trust(d, b)
    genuine = signed_records(b.home, 1)[0]
    padded = genuine.envelope + b"\x9a\x06\x0bunsigned!!!"
    relayed = envelope_pb2.SignedEnvelope.FromString(padded)
    assert relayed.SerializeToString() == padded  # protobuf keeps the unknown field
    serve(net, h, one_page([relayed]))
    # Execute: A takes it from H; D takes it from A.
    report = pull(net, a, h)
    pull(net, d, a)
    # Assert
    assert report.new == 1
    for node in (a, d):
        kept = node.store.get_record(genuine.id)
        assert kept is not None and b"unsigned" not in kept.envelope
        assert kept.envelope == canonical_envelope(relayed) == genuine.envelope
        assert envelope_of(kept).payload == relayed.payload


def test_refusals_are_logged_once_per_page_cut_short_and_rate_limited(
    net: Network, json_log: Callable[[], str]
) -> None:
    # Prepare: H pages 40 times through 10 signed records each with a 100 KB model name.
    a, h = net.add("A"), net.add("H")
    net.trust(a, h)

    def long_name(m: records_pb2.RunRecord) -> None:
        m.model.base = "x" * 100_000

    junk = [crafted_envelope(h.home, i, mutate=long_name) for i in range(10)]
    refused_bytes = sum(len(e.SerializeToString()) for e in junk) * 40
    serve(net, h, lambda c: (junk, str(int(c or 0) + 1), int(c or 0) + 1 < 40))
    # Execute
    report = pull(net, a, h)
    log = json_log()
    # Assert
    assert (report.pages, dict(report.refused)) == (40, {"invalid-envelope": 400})
    lines = [json.loads(line) for line in log.splitlines()]
    refusals = [line for line in lines if line["event"] == "records refused"]
    assert len(refusals) == LOG_BURST and refusals[0]["refused"] == {"invalid-envelope": 10}
    assert max(len(line) for line in log.splitlines()) < 3 * MAX_LOG_VALUE_CHARS + 400
    assert len(log) < 20_000 and refused_bytes > 40_000_000


def test_live_query_merges_numbers_and_texts_of_one_key_numbers_first(net: Network) -> None:
    # Prepare: A has optimizer = 3 (a number); B answers optimizer = 'adamw' (a text).
    a, b = net.add("A"), net.add("B")
    net.trust(a, b)
    net.trust(b, a)
    numeric = make_record(1)
    numeric = type(numeric)(**{**numeric.__dict__, "hyperparameters": {"optimizer": 3}})
    a.store.add_records([sign_record(a.home.identity, numeric)])
    b.store.add_records(signed_records(b.home, 2))
    # Execute
    result = run_query(
        a.home, a.store, "", limit=10, order_by="params.optimizer desc", connect=net.connector(a)
    )
    # Assert
    values = [r.record.record.hyperparameters["optimizer"] for r in result.rows]
    assert values == [3, "adamw", "adamw"]


def test_a_record_over_the_size_limit_is_refused_before_it_is_decoded(net: Network) -> None:
    a, h = net.add("A"), net.add("H")
    net.trust(a, h)

    def oversized(m: records_pb2.RunRecord) -> None:
        for i in range(12_000):
            m.curve.add(step=100 + i, metric="m" + "x" * 20, value=0.5)

    big = crafted_envelope(h.home, mutate=oversized)
    assert len(big.payload) > MAX_RECORD_BYTES
    serve(net, h, one_page([big, envelope_of(signed_records(h.home, 1)[0])]))
    report = pull(net, a, h)
    assert (report.new, dict(report.refused), report.kept) == (1, {"oversized": 1}, 0)
