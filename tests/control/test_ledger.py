"""The outbound ledger: exactly what left the node, to whom and under which rule; bounded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from gridpoint.errors import StoreError
from gridpoint.node.cli.main import main
from gridpoint.node.control import ledger as ledger_module
from gridpoint.node.control.ledger import Ledger
from gridpoint.node.control.withdraw import withdraw
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.control_base import LedgerEntry, LedgerRepeat, LedgerWrite
from gridpoint.node.store.sql_store import SqlStore
from tests.control.world import World
from tests.inprocess import Node


def _sent(world: World, sender_store: object, peer_id: str, kind: str) -> set[str]:
    return {
        e.item_id
        for e in sender_store.ledger(peer_id=peer_id)  # type: ignore[attr-defined]
        if e.kind == kind
    }


def test_the_ledger_lists_exactly_what_b_and_c_received(world: World) -> None:
    # Prepare: A -> B -> C, by sync; C also asks B live.
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(b, c)
    world.trust(c, a)
    ids = {world.publish(a, i) for i in range(4)}
    # Execute
    world.sync(b, a)
    world.sync(c, b)
    withdrawn = withdraw(a.home, a.store, [sorted(ids)[0]])
    world.sync(b, a)
    world.sync(c, b)
    live = world.query(c, "metrics.accuracy > 0")
    # Assert: A's ledger names B alone, B's names C alone, item for item.
    assert {e.peer_id for e in a.store.ledger()} == {b.node_id}
    assert {e.peer_id for e in b.store.ledger()} == {c.node_id}
    assert _sent(world, a.store, b.node_id, "record") == ids
    assert _sent(world, b.store, c.node_id, "record") == ids
    assert _sent(world, a.store, b.node_id, "statement") == set(withdrawn.tombstone_ids)
    assert _sent(world, b.store, c.node_id, "statement") == set(withdrawn.tombstone_ids)
    assert _sent(world, b.store, c.node_id, "answer") == {r.record.id for r in live.rows}
    assert {e.rule for e in a.store.ledger()} == {"default", "statements"}


def test_old_entries_are_rolled_up_per_peer_and_day(world: World) -> None:
    a = world.node("A")
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    peer = "b" * 40
    a.store.append_ledger(
        [LedgerEntry(old, peer, "record", f"{i:064x}", f"{i:064x}", "default") for i in range(5)]
    )
    a.store.append_ledger([LedgerEntry(now, peer, "record", "f" * 64, "f" * 64, "default")])
    folded = a.store.roll_up_ledger(now - timedelta(days=30))
    entries = a.store.ledger(peer_id=peer)
    assert folded == 5
    assert [(e.item_id, e.count) for e in entries] == [("", 5), ("f" * 64, 1)]
    assert entries[0].at.date() == old.date()
    assert a.store.roll_up_ledger(now - timedelta(days=30)) == 0


def _break_the_ledger_ids(store: SqlStore) -> None:
    """Makes the next ledger write's ids not the next ones in a row: on PostgreSQL its
    sequence moves on (as an insert rolled back moves it), on SQLite a trigger inserts a row
    of its own amid the write's (as another writer would)."""
    with store.writing() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER gap AFTER INSERT ON outbound_ledger WHEN NEW.kind = 'answer' "
                "BEGIN INSERT INTO outbound_ledger (at, peer_id, kind, item_id, subject_id, "
                "rule, count) VALUES (NEW.at, 'c', 'gap', '', '', '', 1); END"
            )
        else:
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('outbound_ledger', 'id'), "
                "COALESCE((SELECT max(id) FROM outbound_ledger), 0) + 5)"
            )


@pytest.mark.parametrize("gap", [False, True], ids=["next-ids", "after-a-gap"])
def test_the_store_names_new_entries_rows_in_order_and_counts_repeats_on_them(
    world: World, gap: bool
) -> None:
    # Prepare: with a gap in the ids, the new rows' ids are read back rather than counted.
    a = world.node("A")
    if gap:
        _break_the_ledger_ids(a.store)
    now, peer = datetime.now(UTC), "b" * 40
    items = [f"{i:064x}" for i in (2, 0, 1, 2)]  # the last alike in everything to the first
    entries = [LedgerEntry(now, peer, "answer", item, item, "default") for item in items]
    first = a.store.append_ledger(entries)
    # Execute: repeats counted on three of the four rows, on a row never stored, and on a
    # row that holds another entry than the one said.
    missing = max(first.ids) + 1000
    second = a.store.append_ledger(
        [],
        [
            LedgerRepeat(first.ids[0], entries[0], 10),
            LedgerRepeat(first.ids[1], entries[1], 20),
            LedgerRepeat(first.ids[2], entries[2], 30),
            LedgerRepeat(missing, entries[0], 1),
            LedgerRepeat(first.ids[3], entries[1], 1),
        ],
    )
    # Assert
    assert len(set(first.ids)) == 4 and first.gone == frozenset()
    assert (first.ids == [1, 2, 3, 4]) != gap  # an empty ledger's next ids, unless broken
    assert second == LedgerWrite([], frozenset({missing, first.ids[3]}))
    assert sorted((e.item_id, e.count) for e in a.store.ledger(peer_id=peer)) == sorted(
        [(items[0], 11), (items[1], 21), (items[2], 31), (items[0], 1)]
    )


def _b_publishes_to_c(world: World, records: int) -> tuple[Node, Node, set[str]]:
    """B and C, who trust each other, and the ids of the records B published."""
    b, c = world.node("B"), world.node("C")
    world.mutual(b, c)
    return b, c, {world.publish(b, i) for i in range(records)}


def _answers(store: CatalogStore, peer_id: str) -> list[tuple[str, int]]:
    return sorted((e.item_id, e.count) for e in store.ledger(peer_id=peer_id) if e.kind == "answer")


def test_a_live_query_asked_again_soon_counts_on_its_first_answer_entries(world: World) -> None:
    # Prepare
    b, c, ids = _b_publishes_to_c(world, 3)
    # Execute: C asks B the same thing three times within a minute.
    for _ in range(3):
        assert {r.record.id for r in world.query(c, "metrics.accuracy > 0").rows} == ids
    # Assert: one entry per record sent, on record from the first answer; the repeats are
    # counted on them once written.
    assert _answers(b.store, c.node_id) == sorted((i, 1) for i in ids)
    b.service.ledger.flush()
    assert _answers(b.store, c.node_id) == sorted((i, 3) for i in ids)


def test_counted_repeats_reach_their_entries_by_themselves_and_when_the_ledger_closes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: B answers C twice, and nothing else is written after.
    b, c, ids = _b_publishes_to_c(world, 2)
    monkeypatch.setattr(ledger_module, "REPEATS_EVERY_S", 0.05)
    world.query(c, "metrics.accuracy > 0")
    world.query(c, "metrics.accuracy > 0")
    # Execute / Assert: the timer writes the repeat's count.
    deadline = time.monotonic() + 10
    while _answers(b.store, c.node_id) != sorted((i, 2) for i in ids):
        assert time.monotonic() < deadline, _answers(b.store, c.node_id)
        time.sleep(0.02)
    # Execute: a third answer, then the ledger closes before any timer could write it.
    monkeypatch.setattr(ledger_module, "REPEATS_EVERY_S", 3600.0)
    world.query(c, "metrics.accuracy > 0")
    b.service.close()
    # Assert: written on close; a note after it is written at once.
    assert _answers(b.store, c.node_id) == sorted((i, 3) for i in ids)
    world.query(c, "metrics.accuracy > 0")
    assert _answers(b.store, c.node_id) == sorted((i, 4) for i in ids)


class _FailingWrites:
    """A real store whose ledger writes fail while `failing` (only those that insert rows,
    with `inserts_only`); failed writes are counted."""

    def __init__(self, store: CatalogStore, *, inserts_only: bool = False) -> None:
        self.store = store
        self.failing = False
        self.inserts_only = inserts_only
        self.failed = 0

    def append_ledger(
        self, entries: Sequence[LedgerEntry], repeats: Sequence[LedgerRepeat] = ()
    ) -> LedgerWrite:
        if self.failing and (entries or not self.inserts_only):
            self.failing = False
            self.failed += 1
            raise StoreError("disk full")
        return self.store.append_ledger(entries, repeats)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_repeats_of_a_rolled_up_entry_outlive_a_failed_write(world: World) -> None:
    # Prepare: X sent three times (the repeats counted in memory), then its row rolled up.
    a = world.node("A")
    held = _FailingWrites(a.store, inserts_only=True)
    ledger, peer, x = Ledger(cast(CatalogStore, held), detail_days=30), "b" * 40, "a" * 64
    for _ in range(3):
        ledger.note(peer, "answer", [(x, x, "default")])
    assert a.store.roll_up_ledger(datetime.now(UTC) + timedelta(days=1)) == 1
    # Execute: the repeats' own row cannot be written the first time.
    held.failing = True
    with pytest.raises(StoreError):
        ledger.flush()
    ledger.flush()
    # Assert: the day holds the first send, a row of their own the two repeats.
    assert held.failed == 1
    assert _answers(a.store, peer) == [("", 1), (x, 2)]


def test_counted_repeats_a_write_failed_to_add_are_tried_again_by_themselves(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    a = world.node("A")
    held = _FailingWrites(a.store)
    ledger, peer, x = Ledger(cast(CatalogStore, held), detail_days=30), "b" * 40, "a" * 64
    monkeypatch.setattr(ledger_module, "REPEATS_EVERY_S", 0.05)
    ledger.note(peer, "answer", [(x, x, "default")])
    # Execute: the repeat's first write (the timer's) fails; nothing else is noted after.
    held.failing = True
    ledger.note(peer, "answer", [(x, x, "default")])
    # Assert: another timer writes it.
    deadline = time.monotonic() + 10
    while _answers(a.store, peer) != [(x, 2)]:
        assert time.monotonic() < deadline, (held.failed, _answers(a.store, peer))
        time.sleep(0.02)
    assert held.failed == 1
    ledger.close()


def test_a_repeat_after_the_fold_window_is_an_entry_of_its_own(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, c, ids = _b_publishes_to_c(world, 2)
    monkeypatch.setattr(ledger_module, "FOLD_S", 0.0)
    # Execute
    world.query(c, "metrics.accuracy > 0")
    world.query(c, "metrics.accuracy > 0")
    # Assert
    assert _answers(b.store, c.node_id) == sorted([(i, 1) for i in ids] * 2)


def test_a_repeat_of_an_entry_rolled_up_since_is_an_entry_of_its_own(world: World) -> None:
    # Prepare: C's first answer is noted, then every detailed entry is rolled up.
    b, c, ids = _b_publishes_to_c(world, 2)
    world.query(c, "metrics.accuracy > 0")
    assert b.store.roll_up_ledger(datetime.now(UTC) + timedelta(days=1)) == 2
    # Execute: the same answer again, within the minute, its rows gone.
    world.query(c, "metrics.accuracy > 0")
    b.service.ledger.flush()
    # Assert: the day counts the first answer, the detail the second; nothing lost.
    assert _answers(b.store, c.node_id) == sorted([("", 2), *((i, 1) for i in ids)])


def test_a_row_id_given_to_a_newer_entry_never_takes_a_repeat_of_the_old_one(
    world: World,
) -> None:
    # Prepare: X noted, every entry rolled up (out of band), then Z, which on SQLite takes
    # X's old row id.
    a = world.node("A")
    ledger, peer = Ledger(a.store, detail_days=30), "b" * 40
    x, z = "a" * 64, "c" * 64
    ledger.note(peer, "answer", [(x, x, "default")])
    assert a.store.roll_up_ledger(datetime.now(UTC) + timedelta(days=1)) == 1
    ledger.note(peer, "answer", [(z, z, "default")])
    # Execute: X sent again within the minute.
    ledger.note(peer, "answer", [(x, x, "default")])
    ledger.flush()
    # Assert: X has an entry of its own; Z's count is Z's.
    assert _answers(a.store, peer) == sorted([("", 1), (x, 1), (z, 1)])


def test_sync_pages_and_model_downloads_are_not_folded(world: World) -> None:
    a = world.node("A")
    ledger, peer, item = Ledger(a.store, detail_days=30), "b" * 40, "d" * 64
    for kind in ("record", "record", "model", "model"):
        ledger.note(peer, kind, [(item, item, "default")], count=3)
    # Two alike in one note: two entries, as two downloads noted at once would be.
    ledger.note(peer, "model", [(item, item, "default"), (item, item, "default")], count=2)
    assert sorted((e.kind, e.count) for e in a.store.ledger(peer_id=peer)) == [
        ("model", 2),
        ("model", 2),
        ("model", 3),
        ("model", 3),
        ("record", 3),
        ("record", 3),
    ]


def test_audit_reads_the_ledger(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    record_id = world.publish(a)
    world.sync(b, a)
    args = ["--home", str(a.home.path), "--db", a.store.url, "audit"]
    assert main([*args, "--peer", "B", "--since", "1d", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert (entry["peer"], entry["kind"], entry["item"], entry["rule"]) == (
        b.node_id,
        "record",
        record_id,
        "default",
    )
    assert main([*args, "--since", "yesterday"]) == 1
    assert "--since 'yesterday'" in capsys.readouterr().err


class _HeldWrites:
    """A real store whose ledger writes wait for `release`; every write is recorded (how
    many entries), and the write numbered `fail_at` (from 0) raises instead."""

    def __init__(self, store: CatalogStore) -> None:
        self.store = store
        self.release = threading.Event()
        self.writing = threading.Event()
        self.writes: list[int] = []
        self.fail_at: int | None = None
        self.calls = 0

    def append_ledger(
        self, entries: Sequence[LedgerEntry], repeats: Sequence[LedgerRepeat] = ()
    ) -> LedgerWrite:
        self.writing.set()
        self.release.wait(30)
        self.calls += 1
        if self.calls - 1 == self.fail_at:
            raise StoreError("disk full")
        self.writes.append(len(entries))
        return self.store.append_ledger(entries, repeats)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _note_in_thread(ledger: Ledger, store: CatalogStore, i: int, seen: dict[int, Any]) -> None:
    item = f"{i:064x}"
    try:
        ledger.note("b" * 40, "answer", [(item, item, "default")])
        # Returned: the entry is stored already.
        seen[i] = any(e.item_id == item for e in store.ledger(peer_id="b" * 40))
    except StoreError as exc:
        seen[i] = exc


def test_notes_made_at_once_are_written_together_and_each_returns_once_stored(
    world: World,
) -> None:
    # Prepare: the first note's write is held while five more are made.
    a = world.node("A")
    held = _HeldWrites(a.store)
    ledger = Ledger(cast(CatalogStore, held), detail_days=30)
    seen: dict[int, Any] = {}
    first = threading.Thread(target=_note_in_thread, args=(ledger, a.store, 0, seen))
    first.start()
    assert held.writing.wait(10)
    others = [
        threading.Thread(target=_note_in_thread, args=(ledger, a.store, i, seen))
        for i in range(1, 6)
    ]
    for t in others:
        t.start()
    # Execute
    while len(ledger._open.notes) < 5:  # all five queued behind the held write
        threading.Event().wait(0.01)
    held.release.set()
    for t in [first, *others]:
        t.join(30)
    # Assert: two writes (the first note alone, then the five together), all stored, and
    # each note returned only after its own entry was.
    assert held.writes == [1, 5]
    assert seen == dict.fromkeys(range(6), True)


def test_notes_written_together_all_fail_when_their_write_fails(world: World) -> None:
    a = world.node("A")
    held = _HeldWrites(a.store)
    ledger = Ledger(cast(CatalogStore, held), detail_days=30)
    seen: dict[int, Any] = {}
    first = threading.Thread(target=_note_in_thread, args=(ledger, a.store, 0, seen))
    first.start()
    assert held.writing.wait(10)
    others = [
        threading.Thread(target=_note_in_thread, args=(ledger, a.store, i, seen))
        for i in range(1, 4)
    ]
    for t in others:
        t.start()
    while len(ledger._open.notes) < 3:
        threading.Event().wait(0.01)
    # Execute: the first write succeeds, the one that groups the other three fails.
    held.fail_at = 1
    held.release.set()
    for t in [first, *others]:
        t.join(30)
    # Assert
    assert seen[0] is True
    assert all(isinstance(seen[i], StoreError) for i in range(1, 4))
    assert held.writes == [1]
