"""Provenance: which trusted peers served each record by sync, and when first.

A record's signer says who wrote it; this says where this node found it (the author, or a
peer relaying it). Rows are added for every record of a stored sync page, new or already
held, so a record relayed by several peers lists them all. Bounded by the records and peers
a node keeps: at most one row per (record, peer). Functions here run inside the caller's
write transaction; they never record anything for a record the store refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from gridpoint.node.store.base import RecordSource
from gridpoint.node.store.models import RECORDS as R
from gridpoint.node.store.models import SOURCES
from gridpoint.node.store.sql_rows import as_utc, bulk_insert

__all__ = ["listed", "note"]

#: Ids per IN (...) clause: well under every database's bound on bound parameters.
_BATCH = 500


def note(
    conn: Connection,
    peer_id: str,
    record_ids: Sequence[str],
    inserted: Mapping[str, int] | None = None,
) -> None:
    """Records that peer_id served these records (those the store holds). inserted: the
    records among them stored in this transaction, by id, with their sequence numbers (no
    peer can have served them before: their rows are written without a look)."""
    now = datetime.now(UTC)
    inserted = inserted or {}
    fresh = sorted(inserted[i] for i in set(record_ids) if i in inserted)
    ids = sorted(set(record_ids) - set(inserted))
    for i in range(0, len(ids), _BATCH):
        seqs = set(conn.scalars(select(R.c.seq).where(R.c.id.in_(ids[i : i + _BATCH]))))
        if not seqs:
            continue
        known = set(
            conn.scalars(
                select(SOURCES.c.record_seq).where(
                    SOURCES.c.peer_id == peer_id, SOURCES.c.record_seq.in_(seqs)
                )
            )
        )
        fresh += sorted(seqs - known)
    bulk_insert(
        conn,
        SOURCES,
        [{"record_seq": s, "peer_id": peer_id, "first_seen_at": now} for s in fresh],
    )


def listed(conn: Connection, record_id: str) -> list[RecordSource]:
    """The peers that served record_id, first seen first."""
    rows = conn.execute(
        select(SOURCES.c.peer_id, SOURCES.c.first_seen_at)
        .join(R, R.c.seq == SOURCES.c.record_seq)
        .where(R.c.id == record_id)
        .order_by(SOURCES.c.first_seen_at, SOURCES.c.peer_id)
    )
    return [RecordSource(row.peer_id, as_utc(row.first_seen_at)) for row in rows]
