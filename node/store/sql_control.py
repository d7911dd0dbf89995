"""The owner's-control part of the SQL store (control_base.ControlStore), as a mixin of SqlStore.

Writes go through SqlStore.writing() (one writer at a time, the same transaction discipline
as records); statement effects live in sql_statements.py. The ledger is appended in one
multi-row insert per call (control/ledger.py groups the notes of concurrent calls into one)
and rolled up into per-day counts (roll_up_ledger), so it stays bounded. The key chain is
kept between calls while no statement was added (key_events). Must never store a payload in
the ledger, nor read more than a call's limit.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)

from gridpoint.node.store import sql_statements
from gridpoint.node.store.control_base import (
    ControlStore,
    KeyEvent,
    LedgerEntry,
    LedgerRepeat,
    LedgerWrite,
    PeerPage,
    ServedEnvelope,
    StatementPage,
    StoredStatement,
    VouchEntry,
    Withdrawal,
)
from gridpoint.node.store.control_models import (
    AUDIENCE,
    LEDGER,
    LEDGER_DAYS,
    STATEMENTS,
    VARIANTS,
    VOUCHES,
    WITHDRAWN,
)
from gridpoint.node.store.key_chain import KeyChain
from gridpoint.node.store.models import RECORDS as R
from gridpoint.node.store.query_filter import FilterNode
from gridpoint.node.store.sql_filter import condition
from gridpoint.node.store.sql_rows import as_utc

__all__ = ["SqlControl", "ruled_columns", "served"]

_BATCH = 500
#: Most detailed ledger entries folded into day counts by one roll_up_ledger call.
MAX_ROLL_UP = 200_000


class SqlControl(ControlStore):
    """ControlStore over the SqlStore's engine (mixed into SqlStore)."""

    # (the last statement's seq, the key chain as stored then): see _key_chain().
    _key_chain_at: tuple[int | None, KeyChain] | None = None

    @abstractmethod
    def writing(self) -> AbstractContextManager[Connection]:
        """A write transaction (SqlStore's)."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Connection]:
        """A read transaction (SqlStore's)."""

    # --- statements ----------------------------------------------------------------------

    def add_statements(self, statements: Sequence[StoredStatement]) -> tuple[int, int]:
        with self.writing() as conn:
            return sql_statements.add(conn, statements)

    def statements_after(self, cursor: int, limit: int) -> StatementPage:
        with self.reading() as conn:
            rows = conn.execute(
                select(STATEMENTS.c.seq, STATEMENTS.c.envelope)
                .where(STATEMENTS.c.seq > cursor)
                .order_by(STATEMENTS.c.seq)
                .limit(limit + 1)
            ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return StatementPage(
            envelopes=[r.envelope for r in rows],
            cursors=[r.seq for r in rows],
            next_cursor=rows[-1].seq if rows else cursor,
            has_more=more,
        )

    def count_statements(self) -> int:
        with self.reading() as conn:
            return int(conn.scalar(select(func.count()).select_from(STATEMENTS)) or 0)

    def key_events(self) -> list[KeyEvent]:
        return self.key_chain().events()

    def _key_chain(self, conn: Connection) -> KeyChain:
        """The key chain as conn sees it. Key rows change only in the transaction that stores
        a statement, and statements are only ever appended: while the last statement's seq
        stands, the chain read at it does (one indexed read instead of the whole table and its
        objects, on every served call)."""
        last = conn.scalar(_LAST_STATEMENT)
        chain = self._chain_at(last)
        if chain is None:
            chain = sql_statements.key_chain(conn)
            self._key_chain_at = (last, chain)
        return chain

    def _chain_at(self, last: int | None) -> KeyChain | None:
        """The key chain kept, if it was read while the last statement's seq was `last` (it
        stands while that does: see _key_chain); None when it must be read again."""
        cached = self._key_chain_at
        return cached[1] if cached is not None and cached[0] == last else None

    def vouches(self) -> list[VouchEntry]:
        with self.reading() as conn:
            rows = conn.execute(select(VOUCHES).order_by(VOUCHES.c.voucher_id, VOUCHES.c.author_id))
            return [
                VouchEntry(
                    r.voucher_id, r.author_id, r.depth, r.signed_at_ms, r.statement_id, r.note
                )
                for r in rows
            ]

    # --- withdrawn -----------------------------------------------------------------------

    def withdrawals(self, limit: int = 1000) -> list[Withdrawal]:
        with self.reading() as conn:
            rows = conn.execute(
                select(WITHDRAWN)
                .order_by(WITHDRAWN.c.withdrawn_at.desc(), WITHDRAWN.c.record_id)
                .limit(limit)
            ).all()
        return [
            Withdrawal(
                record_id=r.record_id,
                signer_id=r.signer_id,
                statement_id=r.statement_id,
                reason=r.reason,
                withdrawn_at=as_utc(r.withdrawn_at),
                held=bool(r.held),
            )
            for r in rows
        ]

    def withdrawn_of(self, authors: Mapping[str, str]) -> set[str]:
        with self.reading() as conn:
            return sql_statements.refused_as_withdrawn(conn, dict(authors))

    def record_signers(self, record_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.reading() as conn:
            for batch in _batches(record_ids):
                out |= {
                    r.id: r.signer_id
                    for r in conn.execute(select(R.c.id, R.c.signer_id).where(R.c.id.in_(batch)))
                }
        return out

    # --- serving by policy ---------------------------------------------------------------

    def records_for_peer(
        self,
        cursor: int,
        limit: int,
        rules: Sequence[FilterNode | None],
        reader_ids: Collection[str],
    ) -> PeerPage:
        stmt = _ruled(rules, reader_ids).where(R.c.seq > cursor).order_by(R.c.seq).limit(limit + 1)
        with self.reading() as conn:
            rows = [served(r) for r in conn.execute(stmt)]
        return PeerPage(
            items=rows[:limit],
            next_cursor=rows[:limit][-1].seq if rows else cursor,
            has_more=len(rows) > limit,
        )

    def ruled_records(
        self,
        record_ids: Sequence[str],
        rules: Sequence[FilterNode | None],
        reader_ids: Collection[str],
    ) -> dict[str, ServedEnvelope]:
        out: dict[str, ServedEnvelope] = {}
        with self.reading() as conn:
            for batch in _batches(record_ids):
                for row in conn.execute(_ruled(rules, reader_ids).where(R.c.id.in_(batch))):
                    item = served(row)
                    out[item.record_id] = item
        return out

    def variant(self, record_id: str, key: str) -> bytes | None:
        with self.reading() as conn:
            envelope: bytes | None = conn.scalar(
                select(VARIANTS.c.envelope).where(
                    VARIANTS.c.record_id == record_id, VARIANTS.c.variant_key == key
                )
            )
        return envelope

    def add_variant(self, record_id: str, key: str, variant_id: str, envelope: bytes) -> bytes:
        with self.writing() as conn:
            kept: bytes | None = conn.scalar(
                select(VARIANTS.c.envelope).where(
                    VARIANTS.c.record_id == record_id, VARIANTS.c.variant_key == key
                )
            )
            if kept is not None:
                return kept
            conn.execute(
                insert(VARIANTS).values(
                    record_id=record_id,
                    variant_key=key,
                    variant_id=variant_id,
                    envelope=envelope,
                    created_at=datetime.now(UTC),
                )
            )
            return envelope

    def variants_of(self, record_ids: Sequence[str]) -> list[str]:
        out: list[str] = []
        with self.reading() as conn:
            for batch in _batches(record_ids):
                out += conn.scalars(
                    select(VARIANTS.c.variant_id).where(VARIANTS.c.record_id.in_(batch))
                )
        return sorted(set(out))

    # --- ledger --------------------------------------------------------------------------

    def append_ledger(
        self, entries: Sequence[LedgerEntry], repeats: Sequence[LedgerRepeat] = ()
    ) -> LedgerWrite:
        """Appends entries (those of one note share one time, converted once) and adds the
        repeats to earlier rows' counts, in one write."""
        if not entries and not repeats:
            return LedgerWrite([], frozenset())
        with self.writing() as conn:
            ids = _insert_ledger(conn, entries) if entries else []
            gone = _count_repeats(conn, repeats) if repeats else frozenset[int]()
        return LedgerWrite(ids, gone)

    def ledger(
        self,
        *,
        peer_id: str | None = None,
        since: datetime | None = None,
        subject_id: str | None = None,
        limit: int = 10_000,
    ) -> list[LedgerEntry]:
        days = select(LEDGER_DAYS)
        detail = select(LEDGER).order_by(LEDGER.c.at, LEDGER.c.id)
        if peer_id is not None:
            days = days.where(LEDGER_DAYS.c.peer_id == peer_id)
            detail = detail.where(LEDGER.c.peer_id == peer_id)
        if since is not None:
            days = days.where(LEDGER_DAYS.c.day >= since.date().isoformat())
            detail = detail.where(LEDGER.c.at >= since)
        if subject_id is not None:
            detail = detail.where(LEDGER.c.subject_id == subject_id)
        out: list[LedgerEntry] = []
        with self.reading() as conn:
            if subject_id is None:
                for r in conn.execute(days.order_by(LEDGER_DAYS.c.day).limit(limit)):
                    out.append(
                        LedgerEntry(
                            at=datetime.fromisoformat(r.day).replace(tzinfo=UTC),
                            peer_id=r.peer_id,
                            kind=r.kind,
                            item_id="",
                            subject_id="",
                            rule=r.rule,
                            count=int(r._mapping["count"]),
                        )
                    )
            for r in conn.execute(detail.limit(max(0, limit - len(out)))):
                out.append(
                    LedgerEntry(
                        at=as_utc(r.at),
                        peer_id=r.peer_id,
                        kind=r.kind,
                        item_id=r.item_id,
                        subject_id=r.subject_id,
                        rule=r.rule,
                        count=int(r._mapping["count"]),
                    )
                )
        return out

    def roll_up_ledger(self, before: datetime) -> int:
        counts: dict[tuple[str, str, str, str], int] = {}
        with self.writing() as conn:
            rows = conn.execute(
                select(LEDGER.c.id, LEDGER.c.at, LEDGER.c.peer_id, LEDGER.c.kind, LEDGER.c.rule)
                .add_columns(LEDGER.c.count)
                .where(LEDGER.c.at < before)
                .order_by(LEDGER.c.id)
                .limit(MAX_ROLL_UP)
            ).all()
            if not rows:
                return 0
            for r in rows:
                key = (as_utc(r.at).date().isoformat(), r.peer_id, r.kind, r.rule)
                counts[key] = counts.get(key, 0) + int(r._mapping["count"])
            for (day, peer, kind, rule), count in counts.items():
                where = and_(
                    LEDGER_DAYS.c.day == day,
                    LEDGER_DAYS.c.peer_id == peer,
                    LEDGER_DAYS.c.kind == kind,
                    LEDGER_DAYS.c.rule == rule,
                )
                if conn.scalar(select(LEDGER_DAYS.c.count).where(where)) is None:
                    conn.execute(
                        insert(LEDGER_DAYS).values(
                            day=day, peer_id=peer, kind=kind, rule=rule, count=count
                        )
                    )
                else:
                    conn.execute(
                        update(LEDGER_DAYS).where(where).values(count=LEDGER_DAYS.c.count + count)
                    )
            conn.execute(delete(LEDGER).where(LEDGER.c.id <= rows[-1].id, LEDGER.c.at < before))
            return len(rows)


# Built once: every served call reads it (authentication, then the sharing policy), and
# building the statement cost more than running it.
_LAST_STATEMENT = select(func.max(STATEMENTS.c.seq))
# Read twice by every ledger write.
_LAST_LEDGER_ID = select(func.max(LEDGER.c.id))


def ruled_columns(
    rules: Sequence[FilterNode | None], reader_ids: Collection[str]
) -> tuple[ColumnElement[Any], ...]:
    """Besides a record's envelope, what ServedEnvelope needs: its seq, id, signer, the first
    rule it matches (computed by the database, in the one query) and whether its audience,
    if it has one, names a reader. A statement adds them last, in this order: served() reads
    them back from the row's end."""
    return _ruled_columns(tuple(rules), frozenset(reader_ids))


# Built once per policy and reader: the expressions are immutable, and building them took
# about 7% of answering a live query.
@functools.lru_cache(maxsize=64)
def _ruled_columns(
    rules: tuple[FilterNode | None, ...], reader_ids: frozenset[str]
) -> tuple[ColumnElement[Any], ...]:
    rule: Any = (
        case(*((true() if r is None else condition(r), i) for i, r in enumerate(rules)), else_=-1)
        if rules
        else literal(-1)
    )
    has_audience = exists().where(AUDIENCE.c.record_seq == R.c.seq)
    named = exists().where(
        and_(AUDIENCE.c.record_seq == R.c.seq, AUDIENCE.c.node_id.in_(sorted(reader_ids)))
    )
    return (
        R.c.seq,
        R.c.id,
        R.c.signer_id,
        rule.label("rule"),
        or_(~has_audience, named).label("in_audience"),
    )


def _ruled(rules: Sequence[FilterNode | None], reader_ids: Collection[str]) -> Select[Any]:
    """Records with their envelope and ruled_columns()."""
    return select(R.c.envelope, *ruled_columns(rules, reader_ids))


def served(row: Sequence[Any]) -> ServedEnvelope:
    """A row of envelope and ruled_columns() (SQLAlchemy's or the driver's) as the sharing
    policy reads it. The ruled columns are read by their place from the row's end, where
    every statement adds them: a live answer reads a hundred rows, and a Row's lookups by
    name cost twice as much."""
    envelope, *_, seq, record_id, signer_id, rule, in_audience = row
    return ServedEnvelope(seq, record_id, signer_id, envelope, int(rule), bool(in_audience))


def _insert_ledger(conn: Connection, entries: Sequence[LedgerEntry]) -> list[int]:
    """Inserts the entries; their row ids, in order."""
    # The driver's own executemany, without SQLAlchemy's per-row work: a sync page notes
    # hundreds of entries, and the ledger must cost sync little (bench/).
    process = LEDGER.c.at.type.bind_processor(conn.dialect)
    stamps: dict[datetime, Any] = {}

    def stamp(at: datetime) -> Any:
        if at not in stamps:
            stamps[at] = at if process is None else process(at)
        return stamps[at]

    mark = _mark(conn)
    before = conn.scalar(_LAST_LEDGER_ID) or 0
    rows = [(stamp(e.at), *_stored(e), e.count) for e in entries]
    columns = "at, peer_id, kind, item_id, subject_id, rule, count"
    conn.exec_driver_sql(
        f"INSERT INTO outbound_ledger ({columns}) VALUES ({', '.join([mark] * 7)})", rows
    )
    after = conn.scalar(_LAST_LEDGER_ID) or 0
    if after == before + len(rows):
        # Each new id is above `before` (ids only grow) and they are distinct: ending at
        # before + n, they are exactly the next n, in the order inserted. The usual case.
        return list(range(before + 1, after + 1))
    # A gap (a PostgreSQL sequence moved on by a rolled-back insert, another writer between):
    # the ids read back through the (peer, time) index, one short range per note.
    return _ids_read_back(conn, rows, before, mark)


def _mark(conn: Connection) -> str:
    """The driver's placeholder, for statements sent to it directly."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _stored(entry: LedgerEntry) -> tuple[str, str, str, str, str]:
    """An entry's peer, kind, item, subject and rule as its row holds them."""
    return (entry.peer_id, entry.kind, entry.item_id, entry.subject_id, entry.rule[:64])


def _ids_read_back(
    conn: Connection, rows: Sequence[tuple[Any, ...]], before: int, mark: str
) -> list[int]:
    """The ids of rows just inserted (above before), in their order; rows alike in
    everything get theirs in order."""
    new: dict[tuple[Any, ...], list[int]] = {}
    for at, peer in dict.fromkeys((r[0], r[1]) for r in rows):
        for row_id, kind, item, subject, rule in conn.exec_driver_sql(
            "SELECT id, kind, item_id, subject_id, rule FROM outbound_ledger "
            f"WHERE peer_id = {mark} AND at = {mark} AND id > {mark} ORDER BY id",
            (peer, at, before),
        ):
            new.setdefault((at, peer, kind, item, subject, rule), []).append(row_id)
    taken: dict[tuple[Any, ...], int] = {}
    ids: list[int] = []
    for r in rows:
        key = r[:6]
        ids.append(new[key][taken.get(key, 0)])
        taken[key] = taken.get(key, 0) + 1
    return ids


_REPEATS_PG = (
    "UPDATE outbound_ledger AS l SET count = l.count + v.more FROM unnest("
    "%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]"
    ") AS v(id, more, peer_id, kind, item_id, subject_id, rule) WHERE l.id = v.id "
    "AND l.peer_id = v.peer_id AND l.kind = v.kind AND l.item_id = v.item_id "
    "AND l.subject_id = v.subject_id AND l.rule = v.rule"
)


def _count_repeats(conn: Connection, repeats: Sequence[LedgerRepeat]) -> frozenset[int]:
    """Adds to stored rows' counts; the rows no longer holding their entries (rolled up, and
    on SQLite their ids perhaps given to newer rows since)."""
    mark = _mark(conn)
    match = (
        f"id = {mark} AND peer_id = {mark} AND kind = {mark} AND item_id = {mark} "
        f"AND subject_id = {mark} AND rule = {mark}"
    )
    more: dict[tuple[int, str, str, str, str, str], int] = {}
    for r in repeats:
        key = (r.row, *_stored(r.entry))
        more[key] = more.get(key, 0) + r.more
    keys = list(more)
    if conn.dialect.name == "postgresql":
        # One statement over arrays: an executemany is a statement per row on the server
        # (10 ms of an answer's 21 for 100 rows, measured in process).
        columns = [list(c) for c in zip(*((k[0], n, *k[1:]) for k, n in more.items()), strict=True)]
        updated = conn.exec_driver_sql(_REPEATS_PG, tuple(columns)).rowcount
    else:
        # The driver's own executemany: SQLAlchemy's per-row work costs more than the updates.
        updated = conn.exec_driver_sql(
            f"UPDATE outbound_ledger SET count = count + {mark} WHERE {match}",
            [(n, *k) for k, n in more.items()],
        ).rowcount
    if updated == len(keys):
        return frozenset()
    # Some did not match (or the driver does not sum an executemany's counts): which.
    return frozenset(
        key[0]
        for key in keys
        if conn.exec_driver_sql(f"SELECT 1 FROM outbound_ledger WHERE {match}", key).first() is None
    )


def _batches(ids: Sequence[str]) -> list[list[str]]:
    unique = sorted(set(ids))
    return [unique[i : i + _BATCH] for i in range(0, len(unique), _BATCH)]
