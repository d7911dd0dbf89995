"""A write the database refuses is one StoreError in plain words, never the driver's text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from gridpoint.errors import GridpointError, StoreError
from gridpoint.node.store.sql_store import SqlStore
from tests.helpers import MakeHome, signed_records


def _on_connect(store: SqlStore, *pragmas: str) -> None:
    """Every new connection of store runs these pragmas (SQLite); the pool starts afresh."""

    def run(dbapi_conn: Any, _record: Any) -> None:
        for pragma in pragmas:
            dbapi_conn.execute(pragma)

    event.listen(store.engine, "connect", run)
    store.engine.dispose()


def _make_read_only(store: SqlStore, db_url: str) -> None:
    """The one per-backend step: SQLite refuses writes by pragma, PostgreSQL by database."""
    if db_url.startswith("sqlite"):
        _on_connect(store, "PRAGMA query_only = ON")
        return
    with store.engine.connect() as conn:
        conn.exec_driver_sql(
            f'ALTER DATABASE "{db_url.rsplit("/", 1)[1]}" SET default_transaction_read_only = on'
        )
        conn.commit()
    store.engine.dispose()


def test_a_read_only_store_says_so(db_url: str, make_home: MakeHome) -> None:
    store = SqlStore(db_url)
    try:
        _make_read_only(store, db_url)
        with pytest.raises(StoreError, match="the store is read-only") as info:
            store.add_records(signed_records(make_home("org"), 1))
        assert "SQL" not in str(info.value) and isinstance(info.value, GridpointError)
        assert store.count_records() == 0
    finally:
        store.close()


def test_a_full_sqlite_store_says_no_space_is_left(tmp_path: Path, make_home: MakeHome) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'full.db'}")
    try:
        _on_connect(store, "PRAGMA max_page_count = 40")
        with pytest.raises(StoreError, match="no space left"):
            store.add_records(signed_records(make_home("org"), 500))
        assert store.count_records() == 0
    finally:
        store.close()
