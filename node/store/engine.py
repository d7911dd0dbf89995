"""Database URLs and engines: which database a store is on, and how it is connected.

SQLite is put in WAL mode with writes that take the lock up front (BEGIN IMMEDIATE), so a
writer never deadlocks a reader; PostgreSQL URLs use the psycopg 3 driver. Must never put a
password in a message: redact_url() is what errors show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["make_engine", "normalize_db_url", "redact_url", "sqlite_file"]


def normalize_db_url(url: str) -> str:
    """Maps postgresql:// to the psycopg 3 driver; leaves other URLs as they are."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The URL without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        rest = creds.split(":", 1)[0] + "@" + host
    return scheme + sep + rest


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases, SQLite in memory and a
    URL that does not parse (opening the store says what is wrong with it)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    in_memory = parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    if parsed.get_backend_name() != "sqlite" or in_memory:
        return None
    return Path(str(parsed.database))


def make_engine(url: str, dialect: str) -> Engine:
    """An engine for a normalized URL of dialect "sqlite" or "postgresql"."""
    if dialect == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves so writes can take the lock up front.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("gridpoint_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
