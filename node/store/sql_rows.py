"""Rows of the SQL store: a record's rows, a stored envelope back (read by protocol/serde.py),
a stored time, what a failed write means, and many rows inserted in one driver call.

Kept apart from sql_store.py, which says when and in which transaction rows are written.
Must never put a database's own error text in a message: it can hold values, paths and SQL;
write_failure() says in plain words what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Connection, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from gridpoint.errors import RequestError, StoreError
from gridpoint.node.protocol.serde import read_stored_envelope
from gridpoint.node.store.base import Peer, StoredRecord
from gridpoint.node.store.query_filter import Value

__all__ = [
    "as_utc",
    "bulk_insert",
    "check_peer",
    "failure_in_words",
    "param_row",
    "record_row",
    "stored",
    "write_failure",
]

# SQLSTATEs of PostgreSQL (and what SQLite says) for the failures a user can act on.
_READ_ONLY = ("25006", "readonly", "read-only")
_DISK_FULL = ("53100", "disk is full", "no space left")
_LOCKED = ("55P03", "database is locked")
#: Longest peer address and name the store holds (its columns are 255 characters).
MAX_PEER_TEXT = 255


def failure_in_words(said: str) -> str | None:
    """What a database's error text means for a user, for the failures one can act on."""
    said = said.lower()
    if any(sign in said for sign in _READ_ONLY):
        return "the store is read-only"
    if any(sign in said for sign in _DISK_FULL):
        return "no space left on the device of the store"
    if any(sign in said for sign in _LOCKED):
        return "the store is locked by another process"
    return None


def write_failure(exc: DBAPIError) -> StoreError:
    """A StoreError saying what a failed write means, without the database's own text."""
    # SQLite ends the whole transaction on a full disk, so what surfaces can be the failed
    # rollback of a savepoint: the cause is further down the chain.
    said = ""
    cause: BaseException | None = exc
    while cause is not None:
        orig = getattr(cause, "orig", cause)
        said += f" {getattr(orig, 'sqlstate', '') or ''} {orig}".lower()
        cause = cause.__context__
    meaning = failure_in_words(said)
    if meaning == "the store is read-only":
        return StoreError(f"{meaning}: nothing was written (check its permissions)")
    if meaning is not None:
        return StoreError(f"{meaning}: nothing was written")
    return StoreError(f"database write failed ({exc.orig.__class__.__name__}): nothing was written")


def check_peer(peer: Peer) -> None:
    """RequestError unless every text of a peer fits its column (no NUL, bounded length)."""
    for what, text in (("address", peer.address), ("name", peer.name)):
        if len(text) > MAX_PEER_TEXT:
            raise RequestError(f"peer {what} is longer than {MAX_PEER_TEXT} characters")
        if "\x00" in text:
            raise RequestError(f"peer {what} contains a NUL character")


def record_row(rec: StoredRecord, now: datetime) -> dict[str, Any]:
    r = rec.record
    return {
        "id": rec.id,
        "signer_id": rec.signer_id,
        "payload_type": "gridpoint.v1.RunRecord",
        "envelope": rec.envelope,
        "signed_at_ms": rec.signed_at_ms,
        "kind": r.kind,
        "study": r.study,
        "status": r.status,
        "period": r.period,
        "task_type": r.task.type,
        "task_num_labels": r.task.num_labels,
        "task_size_bucket": r.task.size_bucket,
        "task_balance_bucket": r.task.balance_bucket,
        "task_language": r.task.language,
        "task_text_length_bucket": r.task.text_length_bucket,
        "task_image_size_bucket": r.task.image_size_bucket,
        "model_base": r.model.base,
        "model_family": r.model.family,
        "model_method": r.model.method,
        "model_num_parameters": r.model.num_parameters,
        "privacy_epsilon": r.privacy.epsilon if r.privacy else None,
        "privacy_delta": r.privacy.delta if r.privacy else None,
        "privacy_protected": r.privacy.protected if r.privacy else "",
        "received_at": now,
    }


def param_row(seq: int, name: str, value: Value | int) -> dict[str, Any]:
    if isinstance(value, str):
        return {"record_seq": seq, "name": name, "num_value": None, "str_value": value}
    return {"record_seq": seq, "name": name, "num_value": float(value), "str_value": None}


def stored(envelope_bytes: bytes) -> StoredRecord:
    """A stored envelope as a StoredRecord (protocol/serde.py reads the wire bytes)."""
    content = read_stored_envelope(envelope_bytes)
    return StoredRecord(
        id=content.id,
        signer_id=content.signer_id,
        envelope=envelope_bytes,
        signed_at_ms=content.signed_at_ms,
        record=content.record,
    )


def as_utc(moment: datetime) -> datetime:
    """A time read back from a timezone-aware column, aware (SQLite hands it back naive)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bulk_insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Inserts rows (dicts with the same keys) in one call of the driver: on PostgreSQL one
    COPY (executemany's pipelined INSERTs took a sync page's store about twice as long), on
    SQLite one executemany.

    Without SQLAlchemy building the parameters of every row anew (half of a sync page's
    storing time was that): the statement is compiled once per table, keys and dialect, each
    value goes through its column type's own bind processor, as SQLAlchemy would send it. A
    row the database refuses raises what SQLAlchemy would (DataError, IntegrityError...).
    """
    if not rows:
        return
    sql, order, processors = _compiled(table, tuple(rows[0]), conn.dialect)
    copying = conn.dialect.name == "postgresql"
    params: list[Any] = []
    for row in rows:
        values = [row[k] for k in order]
        for i, process in processors:
            values[i] = process(values[i])
        if copying:
            params.append(values)
        elif conn.dialect.positional:
            params.append(tuple(values))
        else:
            params.append(dict(zip(order, values, strict=True)))
    if copying:
        _copy(conn, table, order, params)
    else:
        conn.exec_driver_sql(sql, params)


def _copy(conn: Connection, table: Table, order: tuple[str, ...], params: list[list[Any]]) -> None:
    """PostgreSQL's COPY of the rows, in the connection's transaction."""
    quote = conn.dialect.identifier_preparer
    sql = (
        f"COPY {quote.format_table(table)} ({', '.join(quote.quote(k) for k in order)}) FROM STDIN"
    )
    driver = conn.connection.driver_connection
    assert driver is not None, "an open connection has its driver's"
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for values in params:
                copy.write_row(values)
    except psycopg.Error as exc:
        # What SQLAlchemy raises for the same error of an INSERT (the store tells a row it
        # cannot hold by DataError and IntegrityError).
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


@lru_cache(maxsize=64)
def _compiled(
    table: Table, keys: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[str, ...], tuple[tuple[int, Callable[[Any], Any]], ...]]:
    """The INSERT's SQL for these keys in the dialect's parameter style, the keys in the
    order its parameters take them, and the bind processor of each column that has one."""
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
    order = tuple(compiled.positiontup or keys) if dialect.positional else keys
    processors = []
    for i, key in enumerate(order):
        column_type = table.c[key].type
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((i, process))
    return str(compiled), order, tuple(processors)
