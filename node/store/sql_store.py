"""The store on SQL databases through SQLModel/SQLAlchemy: SQLite (default) and PostgreSQL.

Implements the contract of gridpoint.node.store.base. Writes are serialized (SQLite: BEGIN IMMEDIATE;
PostgreSQL: a transaction-scoped advisory lock) so that storage order, which sync cursors
follow, is also commit order: a reader paging by cursor never skips a row committed late.
Schema comes from migrations only (migrations/), applied on open.

Must never let one record the database cannot hold fail the others (it is refused alone,
under a savepoint), read more rows than a query's byte budget allows, or show a database's
own error text (sql_rows.write_failure() says what is wrong).
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

from gridpoint.errors import RequestError, StoreError, in_words
from gridpoint.node.store import sql_artifacts, sql_pending, sql_sources, sql_statements
from gridpoint.node.store.base import (
    MAX_QUERY_LIMIT,
    AddResult,
    CatalogStore,
    Page,
    Peer,
    PendingEnvelope,
    PrivateRun,
    RecordSource,
    StoredArtifact,
    StoredRecord,
)
from gridpoint.node.store.control_base import ServedEnvelope, StoredStatement
from gridpoint.node.store.control_models import AUDIENCE, STATEMENTS
from gridpoint.node.store.engine import make_engine, normalize_db_url, redact_url, sqlite_file
from gridpoint.node.store.key_chain import KeyChain
from gridpoint.node.store.models import METRICS as M
from gridpoint.node.store.models import PARAMS as P
from gridpoint.node.store.models import PARENTS, PEERS
from gridpoint.node.store.models import PRIVATE_RUNS as PRIVATE
from gridpoint.node.store.models import RECORDS as R
from gridpoint.node.store.query_filter import FilterNode, OrderBy
from gridpoint.node.store.run_detail import detail_from_text, detail_text
from gridpoint.node.store.same import Same
from gridpoint.node.store.sql_control import SqlControl, ruled_columns, served
from gridpoint.node.store.sql_filter import metric_walk, query_statements
from gridpoint.node.store.sql_privacy import SqlPrivacy
from gridpoint.node.store.sql_rows import (
    bulk_insert,
    check_peer,
    param_row,
    record_row,
    stored,
    write_failure,
)
from gridpoint.node.store.sqlite_reads import SqliteReads

__all__ = ["SqlStore", "normalize_db_url", "open_store", "redact_url"]


_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_WRITE_LOCK = 0x67726964  # "grid": one advisory lock for catalog writes
# Built once: every served call reads its caller's peer row, and building the statement cost
# more than running it.
_PEER = select(PEERS).where(PEERS.c.node_id == bindparam("node_id"))
_PINNED = select(PEERS.c.fingerprint).where(PEERS.c.node_id == bindparam("node_id"))
# The driver's own SQL, on SQLite (sqlite_reads.py): the key chain stands while the last
# statement's seq does (SqlControl._key_chain).
_LAST_STATEMENT_SQL = f"SELECT max(seq) FROM {STATEMENTS.name}"
_PIN_AND_LAST_STATEMENT = (
    f"SELECT fingerprint, ({_LAST_STATEMENT_SQL}) FROM {PEERS.name} WHERE node_id = ?"
)
# A cursor this node issues: a storage sequence number, ASCII digits that fit int64 (str.isdigit
# would also take '²' and Arabic-Indic digits).
_CURSOR = re.compile(r"[0-9]{1,19}")
_MAX_SEQ = 2**63 - 1
# What a database raises for one row it cannot hold (a value out of range, too long, NUL...).
_ROW_ERRORS = (DataError, IntegrityError, OverflowError, ValueError)
# Rows read per round trip while a query streams under its byte budget.
_STREAM_ROWS = 16
# Rows of a metric's index walked at least by the first window of a sorted query (on
# PostgreSQL: sql_filter.MetricWalk), and at most by one.
_FIRST_WINDOW = 64
_MAX_WINDOW = 16_384
# How much longer than the density seen so far says a next window is made: an estimate from
# a few matches is rough, and a window too short costs a round trip more.
_WINDOW_MARGIN = 1.25


def _next_window(wanted: int, walked: int, matched: int, last: int) -> int:
    """The rows the next window of a metric's walk reads: as many as the share of matches
    walked so far says the wanted rows need (a sparse filter then takes two or three round
    trips, not one per fourfold growth); four times the last window while nothing matched."""
    if matched == 0:
        return min(4 * last, _MAX_WINDOW)
    rows = math.ceil(_WINDOW_MARGIN * wanted * walked / matched)
    return min(max(rows, _FIRST_WINDOW), _MAX_WINDOW)


@functools.cache
def newest_revision() -> str:
    """The newest migration's revision: each file in migrations/versions starts with its
    four-digit revision (0007 in 0007_privacy_ledger.py) and revises the one before it
    (tests/store keeps this true)."""
    return max(p.name[:4] for p in (_MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _revision(conn: Connection) -> str | None:
    """The revision the database is at; None for a new database."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def open_store(url: str) -> SqlStore:
    """Opens (and migrates to the latest schema) the store at a database URL."""
    return SqlStore(url)


class SqlStore(SqlPrivacy, SqlControl, CatalogStore):
    """CatalogStore over SQLAlchemy."""

    def __init__(self, url: str) -> None:
        self.url = normalize_db_url(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"unsupported database {redact_url(url)}: use sqlite:/// or postgresql://"
            )
        self._lock = threading.Lock()
        try:
            self.engine = make_engine(self.url, self.dialect)
            self._migrate()
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open database {redact_url(url)}: {in_words(getattr(exc, 'orig', exc))}"
            ) from exc
        # The reads every peer's call makes, on SQLite by the driver (sqlite_reads.py says why);
        # never in memory, where each connection of the driver's own would be a database of
        # its own.
        self._driver = SqliteReads(self.engine) if sqlite_file(self.url) else None

    def _migrate(self) -> None:
        with self.engine.connect() as conn:
            if _revision(conn) == newest_revision():
                return
            # Imported here: alembic cost every command about a third of a second of start-up,
            # and a store at the newest revision (every open but a node's first) never needs it.
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction, one writer at a time (this process's lock, and on PostgreSQL an
        advisory lock); a database failure comes out as a StoreError."""
        try:
            with self._lock, self.engine.connect() as conn:
                conn.execution_options(gridpoint_write=True)
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.execute(select(func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))
                    yield conn
        except DBAPIError as exc:
            raise write_failure(exc) from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction: every statement in it sees the store as it was at its first
        (SQLite's transactions do; PostgreSQL's do at REPEATABLE READ, which a transaction
        that only reads never fails at)."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    # --- records -------------------------------------------------------------------------

    def add_records(self, records: Sequence[StoredRecord]) -> AddResult:
        with self.writing() as conn:
            return self._insert(conn, records)

    def store_sync_page(
        self,
        peer_id: str,
        records: Sequence[StoredRecord],
        next_cursor: str,
        pending: Sequence[PendingEnvelope] = (),
        statements: Sequence[StoredStatement] = (),
        offered: Sequence[str] = (),
    ) -> AddResult:
        with self.writing() as conn:
            added, _ = sql_statements.add(conn, statements)
            if added:
                # A rotation in this page may have re-keyed the peer: its entry moved on.
                peer_id = sql_statements.key_chain(conn).head(peer_id)
            inserted: dict[str, int] = {}
            result = self._insert(conn, records, inserted)
            sql_sources.note(conn, peer_id, [*(r.id for r in records), *offered], inserted)
            kept, dropped = sql_pending.keep(conn, peer_id, pending)
            conn.execute(
                update(PEERS)
                .where(PEERS.c.node_id == peer_id)
                .values(sync_cursor=next_cursor, last_sync_at=datetime.now(UTC))
            )
            return replace(result, kept=kept, dropped=dropped, statements=added)

    def pending_envelopes(self, peer_id: str) -> list[PendingEnvelope]:
        with self.reading() as conn:
            return sql_pending.listed(conn, peer_id)

    def resolve_pending(
        self,
        peer_id: str,
        admitted: Sequence[StoredRecord],
        dropped: Sequence[str],
        statements: Sequence[StoredStatement] = (),
    ) -> AddResult:
        with self.writing() as conn:
            added, _ = sql_statements.add(conn, statements)
            if added:
                peer_id = sql_statements.key_chain(conn).head(peer_id)
            inserted: dict[str, int] = {}
            result = self._insert(conn, admitted, inserted)
            sql_sources.note(conn, peer_id, [r.id for r in admitted], inserted)
            sql_pending.forget(
                conn, peer_id, [*(r.id for r in admitted), *(s.id for s in statements), *dropped]
            )
            return replace(result, statements=added)

    def _insert(
        self,
        conn: Connection,
        records: Sequence[StoredRecord],
        inserted: dict[str, int] | None = None,
    ) -> AddResult:
        """Inserts the records not yet present: all at once, or, when the database refuses
        the batch, one by one under savepoints so that only the refused ones are left out.
        inserted, when given, receives the storage sequence number of each new record."""
        seqs: dict[str, int] = {} if inserted is None else inserted
        unique: dict[str, StoredRecord] = {}
        for rec in records:
            unique.setdefault(rec.id, rec)
        existing: set[str] = set()
        ids = list(unique)
        for i in range(0, len(ids), 500):
            existing.update(conn.scalars(select(R.c.id).where(R.c.id.in_(ids[i : i + 500]))))
        withdrawn = sql_statements.refused_as_withdrawn(
            conn, {rid: rec.signer_id for rid, rec in unique.items() if rid not in existing}
        )
        fresh = [rec for rec_id, rec in unique.items() if rec_id not in existing | withdrawn]
        gone = tuple(sorted(withdrawn))
        if not fresh:
            return AddResult(new=0, duplicates=len(records) - len(gone), withdrawn=gone)
        try:
            with conn.begin_nested():
                seqs.update(self._insert_rows(conn, fresh))
            refused: list[str] = []
        except _ROW_ERRORS:
            refused = []
            for rec in fresh:
                try:
                    with conn.begin_nested():
                        seqs.update(self._insert_rows(conn, [rec]))
                except _ROW_ERRORS:
                    refused.append(rec.id)
        duplicates = len(records) - len(fresh) - len(gone)
        return AddResult(len(fresh) - len(refused), duplicates, tuple(refused), withdrawn=gone)

    def _insert_rows(self, conn: Connection, fresh: Sequence[StoredRecord]) -> dict[str, int]:
        """Writes the rows of records not held yet; their storage sequence numbers by id."""
        now = datetime.now(UTC)
        # Writers hold the write lock, so max(seq) + 1.. is ours alone: storage order is
        # commit order, which is what sync cursors rely on.
        first = int(conn.scalar(select(func.coalesce(func.max(R.c.seq), 0))) or 0) + 1
        inserted = range(first, first + len(fresh))
        bulk_insert(
            conn,
            R,
            [record_row(rec, now) | {"seq": seq} for seq, rec in zip(inserted, fresh, strict=True)],
        )
        params, metrics, parents, audience = [], [], [], []
        for seq, rec in zip(inserted, fresh, strict=True):
            params += [param_row(seq, k, v) for k, v in rec.record.hyperparameters.items()]
            metrics += [
                {"record_seq": seq, "name": k, "value": v} for k, v in rec.record.metrics.items()
            ]
            parents += [
                {"record_seq": seq, "position": i, "parent_id": parent}
                for i, parent in enumerate(rec.record.parents)
            ]
            audience += [{"record_seq": seq, "node_id": n} for n in rec.record.audience]
        bulk_insert(conn, P, params)
        bulk_insert(conn, M, metrics)
        bulk_insert(conn, PARENTS, parents)
        bulk_insert(conn, AUDIENCE, audience)
        return {rec.id: seq for seq, rec in zip(inserted, fresh, strict=True)}

    def get_record(self, record_id: str) -> StoredRecord | None:
        with self.reading() as conn:
            row = conn.execute(select(R.c.id, R.c.envelope).where(R.c.id == record_id)).first()
        return None if row is None else stored(row.envelope)

    def record_sources(self, record_id: str) -> list[RecordSource]:
        with self.reading() as conn:
            return sql_sources.listed(conn, record_id)

    def records_after(self, cursor: str, limit: int) -> Page:
        if cursor and (not _CURSOR.fullmatch(cursor) or int(cursor) > _MAX_SEQ):
            raise RequestError("sync cursor is not one this node issued")
        _check_limit(limit)
        after = int(cursor or 0)
        with self.reading() as conn:
            rows = conn.execute(
                select(R.c.seq, R.c.envelope)
                .where(R.c.seq > after)
                .order_by(R.c.seq)
                .limit(limit + 1)
            ).all()
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = str(rows[-1].seq) if rows else cursor
        return Page(
            envelopes=[r.envelope for r in rows],
            cursors=[str(r.seq) for r in rows],
            next_cursor=next_cursor,
            has_more=has_more,
        )

    def query(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        offset: int = 0,
        max_bytes: int | None = None,
    ) -> list[StoredRecord]:
        rows = self._envelopes(where, limit, order_by, max_bytes=max_bytes, offset=offset)
        return [stored(row[0]) for row in rows]

    def query_envelopes(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        max_bytes: int,
    ) -> list[bytes]:
        return [r[0] for r in self._envelopes(where, limit, order_by, max_bytes)]

    def query_ruled(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        max_bytes: int,
        rules: Sequence[FilterNode | None],
        reader_ids: Collection[str],
    ) -> list[ServedEnvelope]:
        ruled = ruled_columns(rules, reader_ids)
        return [
            served(r) for r in self._envelopes(where, limit, order_by, max_bytes, columns=ruled)
        ]

    def _envelopes(
        self,
        where: FilterNode | None,
        limit: int,
        order_by: OrderBy | None,
        max_bytes: int | None,
        offset: int = 0,
        columns: Sequence[ColumnElement[Any]] = (),
    ) -> list[Sequence[Any]]:
        """The matching rows (envelope, then columns) in order; with max_bytes, rows stream
        and reading stops at the first that would not fit, so a query never holds more than
        its budget."""
        _check_limit(limit)
        if offset < 0:
            raise RequestError(f"offset must be at least 0, got {offset}")
        out: list[Sequence[Any]] = []
        size = 0
        statements = query_statements(where, order_by)
        if self._driver is not None and len(statements) == 1 and not offset:
            # One SELECT (no snapshot to share with another): the driver reads it.
            stmt = _limited(Same(statements[0]), Same(columns))
            with self._driver.rows(stmt, {"row_limit": limit}) as found:
                for row in found:
                    size += len(row[0])
                    if max_bytes is not None and size > max_bytes:
                        break
                    out.append(row)
            return out
        pg = self.dialect == "postgresql"
        walk = metric_walk(where, order_by) if offset == 0 and pg else None
        with self.reading() as conn:
            if walk is not None:
                # The metric's ranked walk in windows (sql_filter.MetricWalk), each sized by
                # the matches the walk has found so far; then what follows it as usual.
                # The first window as long as the answer: a dense filter needs no second.
                statements, after = statements[1:], None
                window = min(max(limit, _FIRST_WINDOW), _MAX_WINDOW)
                seen = matched = 0
                while len(out) < limit:
                    ends: dict[str, Any] = {"size": window, "wanted": limit - len(out)}
                    if after is not None:
                        ends |= {"after_value": after[0], "after_seq": after[1]}
                    last = conn.execute(walk.edge(after is not None), ends).one_or_none()
                    if last is not None:
                        ends |= {"edge_value": last.value, "edge_seq": last.record_seq}
                    matching = walk.matching(after is not None, last is not None, tuple(columns))
                    if max_bytes is not None:
                        matching = matching.execution_options(yield_per=_STREAM_ROWS)
                    count = 0
                    found = conn.execute(matching, ends)
                    for row in found:
                        count += 1
                        size += len(row.envelope)
                        if max_bytes is not None and size > max_bytes:
                            found.close()
                            return out
                        out.append(tuple(row)[1:])  # the walk's seq first: envelope first
                    if len(out) >= limit:
                        return out
                    if last is None:
                        break
                    after = (last.value, last.record_seq)
                    seen, matched = seen + window, matched + count
                    window = _next_window(limit - len(out), seen, matched, window)
            for stmt in statements:
                if len(out) >= limit:
                    break
                limited: Callable[[Same, Same], Select[Any]] = _limited
                if offset and not out:
                    # An answer in two statements (sorted by a metric): the rows skipped in
                    # the first are counted only when the page starts past its end.
                    skipped = conn.scalar(
                        select(func.count()).select_from(stmt.limit(offset).subquery())
                    )
                    stmt, offset = stmt.offset(offset), offset - int(skipped or 0)
                    limited = _limited.__wrapped__  # a new statement each page: not kept
                rows = conn.execute(
                    limited(Same(stmt), Same(columns)), {"row_limit": limit - len(out)}
                )
                for row in rows:
                    size += len(row.envelope)
                    if max_bytes is not None and size > max_bytes:
                        rows.close()
                        return out
                    out.append(row)
        return out

    def count_records(self, where: FilterNode | None = None) -> int:
        with self.reading() as conn:
            if where is None:
                return int(conn.scalar(select(func.count()).select_from(R)) or 0)
            return sum(
                int(conn.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
                for stmt in query_statements(where, None)
            )

    def known_names(self, family: Literal["params", "metrics"], limit: int = 10_000) -> set[str]:
        table = P if family == "params" else M
        # A skip scan of the (name, ...) index: one lookup per distinct name, not a read of
        # every row (a plain DISTINCT reads millions of rows at 1M records).
        names = select(func.min(table.c.name)).cte("names", recursive=True)
        following = select(func.min(table.c.name)).where(table.c.name > names.c[0])
        names = names.union_all(select(following.scalar_subquery()).where(names.c[0].is_not(None)))
        stmt = select(names.c[0]).where(names.c[0].is_not(None)).limit(limit)
        with self.reading() as conn:
            return set(conn.scalars(stmt))

    # --- peers ---------------------------------------------------------------------------

    def add_peer(self, peer: Peer) -> None:
        check_peer(peer)
        values = {
            "node_id": peer.node_id,
            "address": peer.address,
            "name": peer.name,
            "fingerprint": peer.fingerprint,
            "cert_pem": peer.cert_pem,
            "added_at": peer.added_at,
        }
        with self.writing() as conn:
            present = conn.scalar(select(PEERS.c.node_id).where(PEERS.c.node_id == peer.node_id))
            if present is None:
                conn.execute(insert(PEERS).values(**values, sync_cursor=peer.sync_cursor))
            else:
                # Re-adding updates the address and pinned certificate, keeps the cursor.
                conn.execute(update(PEERS).where(PEERS.c.node_id == peer.node_id).values(**values))

    def get_peer(self, node_id: str) -> Peer | None:
        with self.reading() as conn:
            row = conn.execute(_PEER, {"node_id": node_id}).first()
        return None if row is None else Peer(**row._mapping)

    def pinned_fingerprint(self, node_id: str) -> str | None:
        if self._driver is not None:
            row = self._driver.row(_PIN_AND_LAST_STATEMENT, (node_id,))
            if row is None:
                return None
            pin, last = row
            chain = self._chain_at(last)
            if chain is not None:
                return None if chain.revoked(node_id) else str(pin)
        with self.reading() as conn:
            fingerprint: str | None = conn.scalar(_PINNED, {"node_id": node_id})
            if fingerprint is None or self._key_chain(conn).revoked(node_id):
                return None
        return fingerprint

    def key_chain(self) -> KeyChain:
        if self._driver is not None:
            row = self._driver.row(_LAST_STATEMENT_SQL, ())
            chain = None if row is None else self._chain_at(row[0])
            if chain is not None:
                return chain
        with self.reading() as conn:
            return self._key_chain(conn)

    def list_peers(self) -> list[Peer]:
        with self.reading() as conn:
            rows = conn.execute(select(PEERS).order_by(PEERS.c.added_at, PEERS.c.node_id)).all()
        return [Peer(**r._mapping) for r in rows]

    def remove_peer(self, node_id: str) -> bool:
        with self.writing() as conn:
            return bool(conn.execute(delete(PEERS).where(PEERS.c.node_id == node_id)).rowcount)

    # --- private runs --------------------------------------------------------------------

    def add_run(self, run: PrivateRun, record: StoredRecord | None = None) -> AddResult:
        with self.writing() as conn:
            result = self._insert(conn, [record]) if record is not None else AddResult(0, 0)
            if result.unstorable:
                raise StoreError("the database cannot hold this run's record: nothing was written")
            try:
                conn.execute(
                    insert(PRIVATE).values(
                        study_name=run.study_name,
                        trial_number=run.trial_number,
                        detail=detail_text(run.detail),
                        record_id=run.record_id,
                        created_at=run.created_at,
                    )
                )
            except _ROW_ERRORS as exc:
                raise StoreError(
                    "the database cannot hold this run's private detail: nothing was written"
                ) from exc
            return result

    def list_private_runs(
        self, study_name: str | None = None, *, kind: str | None = "trial"
    ) -> list[PrivateRun]:
        stmt = select(PRIVATE).order_by(PRIVATE.c.id)
        if study_name is not None:
            stmt = stmt.where(PRIVATE.c.study_name == study_name)
        with self.reading() as conn:
            rows = conn.execute(stmt).all()
        runs = [
            PrivateRun(
                study_name=r.study_name,
                trial_number=r.trial_number,
                detail=detail_from_text(r.detail),
                record_id=r.record_id,
                created_at=r.created_at,
            )
            for r in rows
        ]
        return [r for r in runs if kind is None or r.detail.kind == kind]

    # --- artifacts -----------------------------------------------------------------------

    def add_artifact(self, artifact: StoredArtifact) -> bool:
        with self.writing() as conn:
            return sql_artifacts.add(conn, artifact)

    def find_artifacts(self, id_prefix: str, limit: int = 2) -> list[StoredArtifact]:
        with self.reading() as conn:
            return sql_artifacts.find(conn, id_prefix, limit)

    def list_artifacts(self, group: str | None = None) -> list[StoredArtifact]:
        with self.reading() as conn:
            return sql_artifacts.listed(conn, group)

    def add_artifact_readers(self, artifact_id: str, readers: Sequence[str]) -> None:
        with self.writing() as conn:
            sql_artifacts.add_readers(conn, artifact_id, readers)

    def remove_artifact(self, artifact_id: str) -> bool:
        with self.writing() as conn:
            return sql_artifacts.remove(conn, artifact_id)

    def registered_artifacts(self) -> set[str]:
        with self.reading() as conn:
            return sql_artifacts.registered(conn)

    def artifact_version(self, artifact_id: str) -> tuple[str, int] | None:
        with self.reading() as conn:
            return sql_artifacts.version_of(conn, artifact_id)

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
        self.engine.dispose()

    def table_names(self) -> list[str]:
        with self.reading() as conn:
            if self.dialect == "sqlite":
                rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            else:
                rows = conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                )
            return sorted(r[0] for r in rows)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise RequestError(f"limit must be between 1 and {MAX_QUERY_LIMIT}, got {limit}")


# Built once per statement and columns, which come from caches of their own (sql_filter's
# statements per filter, sql_control's ruled columns per policy and reader), the limit a
# parameter: SQLAlchemy works out a new statement's cache key on every execution, which cost
# a third as much as reading a live answer's hundred rows. A cached key holds its objects, so
# their ids are not reused while it is here.
@functools.lru_cache(maxsize=256)
def _limited(stmt: Same, columns: Same) -> Select[Any]:
    limited: Select[Any] = (
        stmt.obj.add_columns(*columns.obj)
        .limit(bindparam("row_limit"))
        .execution_options(yield_per=_STREAM_ROWS)
    )
    return limited
