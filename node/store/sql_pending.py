"""Envelopes kept for retry, per peer, within fixed bounds of count, bytes and age.

A peer's cursor moves past every record of a stored page, so a record refused for a reason
that can pass (its author not trusted yet, signed slightly ahead of our clock) would never be
fetched again. Sync keeps such envelopes here and admits them again in later rounds.

Must never hold more than MAX_PENDING_PER_PEER envelopes or MAX_PENDING_BYTES_PER_PEER bytes
for one peer (a peer can sign any number of records with made-up keys), nor keep one longer
than PENDING_TTL. Functions here run inside the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select

from gridpoint.node.store.base import PendingEnvelope
from gridpoint.node.store.models import PENDING

__all__ = [
    "MAX_PENDING_BYTES_PER_PEER",
    "MAX_PENDING_PER_PEER",
    "PENDING_TTL",
    "forget",
    "keep",
    "listed",
]

#: Most envelopes kept for retry from one peer.
MAX_PENDING_PER_PEER = 10_000
#: Most bytes of envelopes kept for retry from one peer.
MAX_PENDING_BYTES_PER_PEER = 32 * 1024 * 1024
#: How long an envelope is retried before it is forgotten.
PENDING_TTL = timedelta(days=30)


def keep(conn: Connection, peer_id: str, items: Sequence[PendingEnvelope]) -> tuple[int, int]:
    """Adds envelopes not yet kept, within the bounds; returns (kept, dropped)."""
    if not items:
        return 0, 0
    unique = {item.record_id: item for item in items}
    present = set(
        conn.scalars(
            select(PENDING.c.record_id).where(
                PENDING.c.peer_id == peer_id, PENDING.c.record_id.in_(list(unique))
            )
        )
    )
    count, size = conn.execute(
        select(func.count(), func.coalesce(func.sum(PENDING.c.size), 0)).where(
            PENDING.c.peer_id == peer_id
        )
    ).one()
    now = datetime.now(UTC)
    rows = []
    for item in unique.values():
        if item.record_id in present:
            continue
        if count + 1 > MAX_PENDING_PER_PEER or size + len(item.envelope) > (
            MAX_PENDING_BYTES_PER_PEER
        ):
            break
        count, size = count + 1, size + len(item.envelope)
        rows.append(
            {
                "peer_id": peer_id,
                "record_id": item.record_id,
                "envelope": item.envelope,
                "reason": item.reason,
                "size": len(item.envelope),
                "first_seen_at": now,
            }
        )
    if rows:
        conn.execute(insert(PENDING), rows)
    return len(rows), len(unique) - len(present) - len(rows)


def listed(conn: Connection, peer_id: str) -> list[PendingEnvelope]:
    rows = conn.execute(
        select(PENDING.c.record_id, PENDING.c.envelope, PENDING.c.reason)
        .where(PENDING.c.peer_id == peer_id)
        .order_by(PENDING.c.first_seen_at, PENDING.c.record_id)
    ).all()
    return [PendingEnvelope(r.record_id, r.envelope, r.reason) for r in rows]


def forget(conn: Connection, peer_id: str, record_ids: Sequence[str]) -> None:
    """Forgets these envelopes of the peer, and every one kept longer than PENDING_TTL."""
    ids = list(record_ids)
    for i in range(0, len(ids), 500):
        conn.execute(
            delete(PENDING).where(
                PENDING.c.peer_id == peer_id, PENDING.c.record_id.in_(ids[i : i + 500])
            )
        )
    conn.execute(delete(PENDING).where(PENDING.c.first_seen_at < datetime.now(UTC) - PENDING_TTL))
