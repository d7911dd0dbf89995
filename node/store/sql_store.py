"""The store on SQL databases through SQLModel/SQLAlchemy: SQLite (default) and PostgreSQL.

Implements the contract of gridpoint.node.store.base. Writes are serialized (SQLite: BEGIN IMMEDIATE;
PostgreSQL: a transaction-scoped advisory lock) so that storage order, which sync cursors
follow, is also commit order: a reader paging by cursor never skips a row committed late.
Schema comes from migrations only (migrations/), applied on open.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    ColumnElement,
    Connection,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gridpoint.errors import RequestError, StoreError
from gridpoint.node.protocol.envelope import content_id
from gridpoint.node.protocol.serde import decode_record
from gridpoint.node.store.base import AddResult, CatalogStore, Page, Peer, PrivateRun, StoredRecord
from gridpoint.node.store.engine import make_engine, normalize_db_url, redact_url
from gridpoint.node.store.models import METRICS as M
from gridpoint.node.store.models import PARAMS as P
from gridpoint.node.store.models import PEERS
from gridpoint.node.store.models import PRIVATE_RUNS as PRIVATE
from gridpoint.node.store.models import RECORDS as R
from gridpoint.node.store.query_filter import FilterNode, OrderBy, Value
from gridpoint.node.store.sql_filter import condition as sql_condition
from gridpoint.node.store.sql_filter import order_columns
from gridpoint.v1 import envelope_pb2

__all__ = ["SqlStore", "normalize_db_url", "open_store", "redact_url"]


_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_WRITE_LOCK = 0x67726964  # "grid": one advisory lock for catalog writes


def open_store(url: str) -> SqlStore:
    """Opens (and migrates to the latest schema) the store at a database URL."""
    return SqlStore(url)


class SqlStore(CatalogStore):
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
                f"cannot open database {redact_url(url)}: {exc.__class__.__name__}"
            ) from exc

    def _migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self._lock, self.engine.connect() as conn:
                conn.execution_options(gridpoint_write=True)
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.execute(select(func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))
                    yield conn
        except OperationalError as exc:
            raise StoreError(f"database write failed: {exc.__class__.__name__}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # --- records -------------------------------------------------------------------------

    def add_records(self, records: Sequence[StoredRecord]) -> AddResult:
        with self._write() as conn:
            return self._insert(conn, records)

    def store_sync_page(
        self, peer_id: str, records: Sequence[StoredRecord], next_cursor: str
    ) -> AddResult:
        with self._write() as conn:
            result = self._insert(conn, records)
            conn.execute(
                update(PEERS)
                .where(PEERS.c.node_id == peer_id)
                .values(sync_cursor=next_cursor, last_sync_at=datetime.now(UTC))
            )
            return result

    def _insert(self, conn: Connection, records: Sequence[StoredRecord]) -> AddResult:
        unique: dict[str, StoredRecord] = {}
        for rec in records:
            unique.setdefault(rec.id, rec)
        existing: set[str] = set()
        ids = list(unique)
        for i in range(0, len(ids), 500):
            existing.update(conn.scalars(select(R.c.id).where(R.c.id.in_(ids[i : i + 500]))))
        fresh = [rec for rec_id, rec in unique.items() if rec_id not in existing]
        if not fresh:
            return AddResult(new=0, duplicates=len(records))
        now = datetime.now(UTC)
        # Writers hold the write lock, so max(seq) + 1.. is ours alone: storage order is
        # commit order, which is what sync cursors rely on.
        first = int(conn.scalar(select(func.coalesce(func.max(R.c.seq), 0))) or 0) + 1
        inserted = range(first, first + len(fresh))
        conn.execute(
            insert(R),
            [
                _record_row(rec, now) | {"seq": seq}
                for seq, rec in zip(inserted, fresh, strict=True)
            ],
        )
        params, metrics = [], []
        for seq, rec in zip(inserted, fresh, strict=True):
            params += [_param_row(seq, k, v) for k, v in rec.record.hyperparameters.items()]
            metrics += [
                {"record_seq": seq, "name": k, "value": v} for k, v in rec.record.metrics.items()
            ]
        if params:
            conn.execute(insert(P), params)
        if metrics:
            conn.execute(insert(M), metrics)
        return AddResult(new=len(fresh), duplicates=len(records) - len(fresh))

    def get_record(self, record_id: str) -> StoredRecord | None:
        with self._read() as conn:
            row = conn.execute(select(R.c.id, R.c.envelope).where(R.c.id == record_id)).first()
        return None if row is None else _stored(row.envelope)

    def records_after(self, cursor: str, limit: int) -> Page:
        if cursor and not cursor.isdigit():
            raise RequestError("sync cursor is not one this node issued")
        after = int(cursor or 0)
        with self._read() as conn:
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
        self, where: FilterNode | None, *, limit: int, order_by: OrderBy | None = None
    ) -> list[StoredRecord]:
        condition = sql_condition(where) if where is not None else None
        if order_by is not None and order_by.key.startswith("metrics."):
            return self._query_by_metric(condition, order_by, limit)
        stmt = select(R.c.envelope)
        if condition is not None:
            stmt = stmt.where(condition)
        if order_by is not None:
            stmt, keys = order_columns(stmt, order_by.key)
            stmt = stmt.order_by(
                *((k.desc() if order_by.descending else k.asc()).nulls_last() for k in keys),
                R.c.seq,
            )
        else:
            stmt = stmt.order_by(R.c.seq)
        with self._read() as conn:
            rows = conn.execute(stmt.limit(limit)).all()
        return [_stored(r.envelope) for r in rows]

    def _query_by_metric(
        self, condition: ColumnElement[bool] | None, order_by: OrderBy, limit: int
    ) -> list[StoredRecord]:
        """Sorted by a metric: walk the (name, value) index and stop after `limit` matches,
        instead of sorting every match; records without the metric follow (nulls last)."""
        name = order_by.key.split(".", 1)[1]
        m = M.alias("order_metric")
        value = m.c.value.desc() if order_by.descending else m.c.value.asc()
        ranked = (
            select(R.c.envelope)
            .select_from(m.join(R, R.c.seq == m.c.record_seq))
            .where(m.c.name == name)
            .order_by(value, R.c.seq)
            .limit(limit)
        )
        missing = (
            select(R.c.envelope)
            .where(~exists().where(M.c.record_seq == R.c.seq, M.c.name == name))
            .order_by(R.c.seq)
        )
        if condition is not None:
            ranked, missing = ranked.where(condition), missing.where(condition)
        with self._read() as conn:
            rows = list(conn.execute(ranked).all())
            if len(rows) < limit:
                rows += conn.execute(missing.limit(limit - len(rows))).all()
        return [_stored(r.envelope) for r in rows]

    def count_records(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(select(func.count()).select_from(R)) or 0)

    # --- peers ---------------------------------------------------------------------------

    def add_peer(self, peer: Peer) -> None:
        values = {
            "node_id": peer.node_id,
            "address": peer.address,
            "name": peer.name,
            "fingerprint": peer.fingerprint,
            "cert_pem": peer.cert_pem,
            "added_at": peer.added_at,
        }
        with self._write() as conn:
            present = conn.scalar(select(PEERS.c.node_id).where(PEERS.c.node_id == peer.node_id))
            if present is None:
                conn.execute(insert(PEERS).values(**values, sync_cursor=peer.sync_cursor))
            else:
                # Re-adding updates the address and pinned certificate, keeps the cursor.
                conn.execute(update(PEERS).where(PEERS.c.node_id == peer.node_id).values(**values))

    def get_peer(self, node_id: str) -> Peer | None:
        with self._read() as conn:
            row = conn.execute(select(PEERS).where(PEERS.c.node_id == node_id)).first()
        return None if row is None else Peer(**row._mapping)

    def list_peers(self) -> list[Peer]:
        with self._read() as conn:
            rows = conn.execute(select(PEERS).order_by(PEERS.c.added_at, PEERS.c.node_id)).all()
        return [Peer(**r._mapping) for r in rows]

    def remove_peer(self, node_id: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute(delete(PEERS).where(PEERS.c.node_id == node_id)).rowcount)

    # --- private runs --------------------------------------------------------------------

    def add_private_run(self, run: PrivateRun) -> int:
        with self._write() as conn:
            return int(
                conn.execute(
                    insert(PRIVATE)
                    .values(
                        study_name=run.study_name,
                        trial_number=run.trial_number,
                        detail=run.detail,
                        record_id=run.record_id,
                        created_at=run.created_at,
                    )
                    .returning(PRIVATE.c.id)
                ).scalar_one()
            )

    def list_private_runs(self, study_name: str | None = None) -> list[PrivateRun]:
        stmt = select(PRIVATE).order_by(PRIVATE.c.id)
        if study_name is not None:
            stmt = stmt.where(PRIVATE.c.study_name == study_name)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [
            PrivateRun(
                study_name=r.study_name,
                trial_number=r.trial_number,
                detail=r.detail,
                record_id=r.record_id,
                created_at=r.created_at,
            )
            for r in rows
        ]

    def close(self) -> None:
        self.engine.dispose()

    def table_names(self) -> list[str]:
        with self._read() as conn:
            if self.dialect == "sqlite":
                rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            else:
                rows = conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                )
            return sorted(r[0] for r in rows)


def _record_row(rec: StoredRecord, now: datetime) -> dict[str, Any]:
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
        "model_base": r.model.base,
        "model_family": r.model.family,
        "model_method": r.model.method,
        "model_num_parameters": r.model.num_parameters,
        "received_at": now,
    }


def _param_row(seq: int, name: str, value: Value | int) -> dict[str, Any]:
    if isinstance(value, str):
        return {"record_seq": seq, "name": name, "num_value": None, "str_value": value}
    return {"record_seq": seq, "name": name, "num_value": float(value), "str_value": None}


def _stored(envelope_bytes: bytes) -> StoredRecord:
    env = envelope_pb2.SignedEnvelope.FromString(envelope_bytes)
    return StoredRecord(
        id=content_id(env.signer_id, env.payload),
        signer_id=env.signer_id,
        envelope=envelope_bytes,
        signed_at_ms=env.signed_at_unix_ms,
        record=decode_record(env.payload),
    )
