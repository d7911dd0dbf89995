"""Checks, before a daemon starts, that its store can be written and is a database at all.

A read-only or corrupt SQLite file otherwise lets the daemon start and then fail on every
sync. PostgreSQL needs no check here: a server that refuses us fails when the store opens.

Must never create, repair or change the database: it only looks.
"""

from __future__ import annotations

import os
import sqlite3

from gridpoint.errors import StoreError, in_words
from gridpoint.node.store.engine import sqlite_file
from gridpoint.node.store.sql_rows import failure_in_words

__all__ = ["check_store_writable"]


def check_store_writable(url: str) -> None:
    """StoreError saying plainly what is wrong with a SQLite store; nothing for others."""
    path = sqlite_file(url)
    if path is None:
        return
    folder = path.parent
    if not folder.is_dir():
        raise StoreError(f"the store's folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"the store's folder {folder} is read-only: SQLite needs to write its journal there"
        )
    if not path.exists():
        return
    read_only = StoreError(f"the store {path} is read-only: make it writable by this user")
    if not os.access(path, os.R_OK | os.W_OK):
        raise read_only
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()
        # Taking the write lock and letting go writes nothing, but fails where writes would
        # (an immutable file, a read-only mount), whoever we run as.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        meaning = failure_in_words(str(exc))
        if meaning == "the store is read-only":
            raise read_only from None
        raise StoreError(f"the store {path} cannot be used: {meaning or in_words(exc)}") from None
    except sqlite3.DatabaseError:
        raise StoreError(
            f"the store {path} is not a readable SQLite database (corrupt, or another file); "
            "restore it from a backup or move it away to start an empty one"
        ) from None
    finally:
        conn.close()
    if result is None or result[0] != "ok":
        raise StoreError(f"the store {path} is damaged (integrity check failed); restore a backup")
