"""The reads a SQLite store runs by the driver itself (node/store/sqlite_reads.py): a live
query's rows, the caller's pin. What they answer is the store contract's (test_records.py);
here, what reading beside SQLAlchemy must not change: snapshots, errors, connections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from gridpoint.node.store.query_filter import parse_filter
from gridpoint.node.store.sql_store import SqlStore, open_store
from tests.helpers import MakeHome, pin, signed_records


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield store
    store.close()


def _open_on(path: Path) -> list[str]:
    """This process's open descriptors on the database's files (the file, its WAL, its
    shared memory)."""
    fds = Path("/proc/self/fd")
    links = [os.readlink(fds / fd) for fd in os.listdir(fds) if (fds / fd).is_symlink()]
    return [link for link in links if link.startswith(str(path))]


def test_a_read_stopped_at_its_budget_keeps_no_snapshot(
    sqlite_store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: five records, and a query whose byte budget stops it after the first row.
    home = make_home("org")
    first, later = signed_records(home, 5), signed_records(home, 8)[5:]
    sqlite_store.add_records(first)
    size = len(sqlite_store.query(None, limit=1)[0].envelope)
    # Execute: the stopped read, then a write, then a read on whatever connection is idle.
    stopped = sqlite_store.query(None, limit=100, max_bytes=size + 1)
    sqlite_store.add_records(later)
    after = sqlite_store.query(None, limit=100)
    # Assert: the stopped read ended its snapshot: the next read sees the write.
    assert len(stopped) == 1
    assert len(after) == 8


def test_reads_at_once_answer_alike_and_close_leaves_no_connection(
    tmp_path: Path, make_home: MakeHome
) -> None:
    # Prepare: records and a pinned peer; a filter the driver reads in one statement.
    store = open_store(f"sqlite:///{tmp_path / 'catalog.db'}")
    home, peer = make_home("org"), make_home("peer")
    store.add_records(signed_records(home, 20))
    pin(store, peer, "127.0.0.1:1")
    where = parse_filter("metrics.accuracy > 0")
    expected = [r.id for r in store.query(where, limit=100)]

    def read(_: int) -> tuple[list[str], str | None]:
        ids = [r.id for r in store.query(where, limit=100)]
        return ids, store.pinned_fingerprint(peer.identity.node_id)

    # Execute: eight threads reading at once, 200 reads in all; then close.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(read, range(200)))
    open_while = _open_on(tmp_path / "catalog.db")
    store.close()
    # Assert: every read answered as one read alone; nothing is left open on the database.
    assert all(a == (expected, peer.tls_fingerprint) for a in answers)
    assert open_while
    assert _open_on(tmp_path / "catalog.db") == []


def test_a_failed_read_raises_sqlalchemys_error_and_the_next_reads_work(
    sqlite_store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: records, read once (a connection is kept), then the table is taken away.
    sqlite_store.add_records(signed_records(make_home("org"), 3))
    assert len(sqlite_store.query(None, limit=100)) == 3
    with sqlite_store.writing() as conn:
        conn.exec_driver_sql("ALTER TABLE records RENAME TO records_gone")
    # Execute / Assert: the error SQLAlchemy raises for its own reads, naming the table.
    with pytest.raises(OperationalError, match="no such table: records"):
        sqlite_store.query(None, limit=100)
    # Execute: the table comes back.
    with sqlite_store.writing() as conn:
        conn.exec_driver_sql("ALTER TABLE records_gone RENAME TO records")
    # Assert: reads answer again, as before.
    assert len(sqlite_store.query(None, limit=100)) == 3


def test_a_store_in_memory_reads_through_sqlalchemy_alone(make_home: MakeHome) -> None:
    # Prepare: a store in memory, where each new connection would be an empty database.
    store = open_store("sqlite://")
    peer = make_home("peer")
    try:
        # Execute: the reads the driver makes on disk, then a write and the reads again.
        assert store.pinned_fingerprint(peer.identity.node_id) is None
        assert store.query(None, limit=10) == []
        pin(store, peer, "127.0.0.1:1")
        store.add_records(signed_records(make_home("org"), 2))
        # Assert: one database throughout.
        assert store.pinned_fingerprint(peer.identity.node_id) == peer.tls_fingerprint
        assert len(store.query(None, limit=10)) == 2
    finally:
        store.close()


def test_reads_after_close_answer_and_leave_nothing_open(
    tmp_path: Path, make_home: MakeHome
) -> None:
    # Prepare: a store read from (a connection kept idle), then closed.
    store = open_store(f"sqlite:///{tmp_path / 'catalog.db'}")
    store.add_records(signed_records(make_home("org"), 3))
    size = len(store.query(None, limit=1)[0].envelope)
    store.close()
    # Execute: reads that stop early (a row found; a query cut by its budget) after close.
    chain = store.key_chain()
    cut = store.query(None, limit=100, max_bytes=size + 1)
    # Assert: they answer as before, and leave no connection open (nor, with the suite's
    # warnings as errors, an exception raised where nobody can catch it).
    assert chain.revoked("a" * 40) is False
    assert len(cut) == 1
    assert _open_on(tmp_path / "catalog.db") == []
