"""Reads on SQLite run by the driver itself, beside SQLAlchemy: for the reads every peer's
call makes (the caller's pin, the key chain's last statement, a live query's rows).

Why: through SQLAlchemy, a read's connection checkout, transaction, execution context and
row objects cost as much as SQLite's own work: a live answer's hundred rows took 0.62-0.65
ms that way and 0.31 ms by the driver, and reading the pin on a pooled connection spent two
thirds of its time in the pool (bench/RESULTS.md, "The driver reads a live answer").

Each read is one SELECT outside any transaction (SQLite reads one snapshot per statement),
on a connection the engine opened (so with the PRAGMAs its connect hook sets), kept out of
the engine's pool in a pool of its own: one connection per read at a time, so as many as
the reads that ran at once. A statement built with SQLAlchemy is compiled for the engine's
dialect once, and its SQL and parameters (bind processors applied) kept per row limit. A
driver error comes out as the DBAPIError SQLAlchemy raises for the same error, and the
connection it came from is closed, not reused.

Must never write, run more than one statement per read, or hand one connection to two
reads at once.
"""

from __future__ import annotations

import functools
import queue
import sqlite3
import threading
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql.compiler import SQLCompiler

from gridpoint.node.store.same import Same

__all__ = ["SqliteReads"]

#: Row limits whose SQL and parameters are kept per statement (a page's limit is one of a
#: few: the asked limit, less what an earlier statement of the same answer gave).
_KEPT = 1024


class SqliteReads:
    """The driver's reads over one SQLite engine's database; thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()

    def row(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of one SELECT in the driver's SQL (None: no row)."""
        with self._rows(sql, params) as rows:
            return next(rows, None)

    @contextmanager
    def rows(
        self, stmt: Select[Any], params: dict[str, Any]
    ) -> Iterator[Iterator[tuple[Any, ...]]]:
        """The rows of stmt (a statement built once and reused: it is compiled once), read
        as the caller iterates them; the read ends when the block does, read to the end or
        not. params are its parameters with a value at each call (a row limit)."""
        sql, values = _bound(Same(stmt), self._engine.dialect, tuple(sorted(params.items())))
        with self._rows(sql, values) as found:
            yield found

    def close(self) -> None:
        """Closes the idle connections, and each busy one when its read ends."""
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    @contextmanager
    def _rows(self, sql: str, params: tuple[Any, ...]) -> Iterator[Iterator[tuple[Any, ...]]]:
        conn = self._take()
        try:
            cursor = _executed(conn, sql, params)
            # The rows closed first, while the connection is open: a read that stops early
            # would otherwise leave them to be collected later, when closing them closes the
            # cursor again, maybe on a closed connection (an error nobody can catch).
            with closing(cursor), closing(_checked(cursor, sql, params)) as found:
                yield found
        except BaseException:
            conn.close()  # what failed may be the connection itself
            raise
        self._give_back(conn)

    def _take(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        pooled = self._engine.raw_connection()
        conn = pooled.driver_connection
        assert isinstance(conn, sqlite3.Connection), "a SQLite engine's driver is sqlite3"
        # Out of the engine's pool: it neither counts it nor hands it to anyone else.
        pooled.detach()
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.put(conn)
                return
        conn.close()


def _executed(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
    try:
        return conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise _as_sqlalchemy(sql, params, exc) from exc


def _checked(
    cursor: sqlite3.Cursor, sql: str, params: tuple[Any, ...]
) -> Generator[tuple[Any, ...]]:
    """The cursor's rows; an error while stepping through them is SQLAlchemy's."""
    try:
        yield from cursor
    except sqlite3.Error as exc:
        raise _as_sqlalchemy(sql, params, exc) from exc


def _as_sqlalchemy(sql: str, params: tuple[Any, ...], exc: sqlite3.Error) -> StatementError:
    """What SQLAlchemy raises for the same error of its own statements."""
    return DBAPIError.instance(sql, params, exc, sqlite3.Error)


@functools.lru_cache(maxsize=_KEPT)
def _bound(
    stmt: Same, dialect: Dialect, params: tuple[tuple[str, Any], ...]
) -> tuple[str, tuple[Any, ...]]:
    """stmt's SQL for the driver, and its parameters in order, bind processors applied."""
    state = _compiled(stmt, dialect).construct_expanded_state(dict(params))
    assert state.positiontup is not None, "SQLite's parameters are positional"
    values = []
    for name in state.positiontup:
        value = state.parameters[name]
        process = state.processors.get(name)
        values.append(value if process is None else process(value))
    return state.statement, tuple(values)


@functools.lru_cache(maxsize=256)
def _compiled(stmt: Same, dialect: Dialect) -> SQLCompiler:
    compiled = stmt.obj.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler), "a SELECT compiles to SQL"
    return compiled
