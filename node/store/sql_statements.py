"""Statements in the SQL store: each type's effect, applied in the caller's write transaction.

APPLY maps a statement type to the one function that applies it; a new type is one entry
here (plus its table) and one verification rule in gridpoint.node.control.statements. What
is applied was admitted there; the checks repeated here (a tombstone deletes only records its
signer's chain authored) keep the store right whatever a caller hands it.

Must never delete a record another author signed, nor keep a withdrawn record's payload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from gridpoint.node.protocol.tls import fingerprint
from gridpoint.node.store.control_base import (
    KeyEvent,
    KeyRevocation,
    KeyRotation,
    Statement,
    StoredStatement,
    Tombstone,
    Unvouch,
    Vouch,
)
from gridpoint.node.store.control_models import KEYS, STATEMENTS, VARIANTS, VOUCHES, WITHDRAWN
from gridpoint.node.store.key_chain import KeyChain
from gridpoint.node.store.models import ARTIFACT_READERS, ARTIFACTS, PEERS, PENDING, SOURCES
from gridpoint.node.store.models import RECORDS as R

__all__ = ["APPLY", "add", "key_chain", "refused_as_withdrawn"]

#: Ids per IN (...) clause: well under every database's bound on bound parameters.
_BATCH = 500


def key_chain(conn: Connection) -> KeyChain:
    """The key chain as stored now."""
    rows = conn.execute(select(KEYS)).all()
    return KeyChain(
        KeyEvent(
            node_id=r.node_id,
            successor_id=r.successor_id,
            rotated_at_ms=r.rotated_at_ms,
            successor_cert_pem=r.successor_cert,
            revoked=r.revocation_id is not None,
        )
        for r in rows
    )


def _batches(ids: Sequence[str]) -> list[list[str]]:
    unique = sorted(set(ids))
    return [unique[i : i + _BATCH] for i in range(0, len(unique), _BATCH)]


def refused_as_withdrawn(conn: Connection, authors: dict[str, str]) -> set[str]:
    """Which record ids (id -> signer) a tombstone of their author's chain names."""
    if not authors:
        return set()
    named: list[tuple[str, str]] = []
    for batch in _batches(list(authors)):
        named += [
            (r.record_id, r.signer_id)
            for r in conn.execute(
                select(WITHDRAWN.c.record_id, WITHDRAWN.c.signer_id).where(
                    WITHDRAWN.c.record_id.in_(batch)
                )
            )
        ]
    if not named:
        return set()
    chain = key_chain(conn)
    return {rid for rid, signer in named if chain.speaks_for(signer, authors[rid])}


def add(conn: Connection, statements: Sequence[StoredStatement]) -> tuple[int, int]:
    """Stores statements not held yet and applies each, in order; returns (new, held)."""
    new = held = 0
    now = datetime.now(UTC)
    for st in statements:
        if conn.scalar(select(STATEMENTS.c.seq).where(STATEMENTS.c.id == st.id)) is not None:
            held += 1
            continue
        conn.execute(
            insert(STATEMENTS).values(
                id=st.id,
                payload_type=st.payload_type,
                signer_id=st.signer_id,
                envelope=st.envelope,
                signed_at_ms=st.signed_at_ms,
                received_at=now,
            )
        )
        APPLY[type(st.statement)](conn, st, now)
        new += 1
    return new, held


def _tombstone(conn: Connection, st: StoredStatement, now: datetime) -> None:
    assert isinstance(st.statement, Tombstone)
    chain = key_chain(conn)
    targets = st.statement.record_ids
    held: dict[str, tuple[int, str]] = {}
    for batch in _batches(targets):
        for row in conn.execute(select(R.c.seq, R.c.id, R.c.signer_id).where(R.c.id.in_(batch))):
            held[row.id] = (row.seq, row.signer_id)
    mine = {rid for rid, (_, author) in held.items() if chain.speaks_for(st.signer_id, author)}
    rows: list[dict[str, Any]] = [
        {
            "record_id": rid,
            "signer_id": st.signer_id,
            "statement_id": st.id,
            "held": rid in mine,
            "reason": st.statement.reason,
            "withdrawn_at": now,
        }
        for rid in sorted(set(targets))
        if rid not in held or rid in mine
    ]
    present: set[str] = set()
    for batch in _batches([str(r["record_id"]) for r in rows]):
        present |= set(
            conn.scalars(
                select(WITHDRAWN.c.record_id).where(
                    WITHDRAWN.c.record_id.in_(batch), WITHDRAWN.c.signer_id == st.signer_id
                )
            )
        )
    fresh = [r for r in rows if r["record_id"] not in present]
    if fresh:
        conn.execute(insert(WITHDRAWN), fresh)
    for batch in _batches(sorted(set(targets) - (set(held) - mine))):
        # A kept model of a withdrawn record is served to nobody from now on.
        artifacts = select(ARTIFACTS.c.id).where(ARTIFACTS.c.record_id.in_(batch))
        conn.execute(delete(ARTIFACT_READERS).where(ARTIFACT_READERS.c.artifact_id.in_(artifacts)))
        conn.execute(delete(VARIANTS).where(VARIANTS.c.record_id.in_(batch)))
    seqs = sorted(held[rid][0] for rid in mine)
    for i in range(0, len(seqs), _BATCH):
        # Parameters, metrics, parents, sources and audience go with the row (ON DELETE CASCADE).
        conn.execute(delete(R).where(R.c.seq.in_(seqs[i : i + _BATCH])))


def _key_row(conn: Connection, node_id: str, values: dict[str, Any]) -> None:
    if conn.scalar(select(KEYS.c.node_id).where(KEYS.c.node_id == node_id)) is None:
        conn.execute(insert(KEYS).values(node_id=node_id, **values))
    else:
        conn.execute(update(KEYS).where(KEYS.c.node_id == node_id).values(**values))


def _rotation(conn: Connection, st: StoredStatement, _now: datetime) -> None:
    rotation = st.statement
    assert isinstance(rotation, KeyRotation)
    _key_row(
        conn,
        rotation.old_id,
        {
            "successor_id": rotation.new_id,
            "rotated_at_ms": st.signed_at_ms,
            "successor_cert": rotation.tls_cert_pem,
            "rotation_id": st.id,
        },
    )
    old = conn.execute(select(PEERS).where(PEERS.c.node_id == rotation.old_id)).first()
    if old is None:
        return
    new_present = conn.scalar(select(PEERS.c.node_id).where(PEERS.c.node_id == rotation.new_id))
    if new_present is None:
        # The trusted entry follows the identity: same address, name and cursor, the new
        # key's id and the certificate the old key vouched for.
        conn.execute(
            insert(PEERS).values(
                **{
                    **old._mapping,
                    "node_id": rotation.new_id,
                    "fingerprint": fingerprint(rotation.tls_cert_pem),
                    "cert_pem": rotation.tls_cert_pem,
                }
            )
        )
        conn.execute(
            update(PENDING)
            .where(PENDING.c.peer_id == rotation.old_id)
            .values(peer_id=rotation.new_id)
        )
        conn.execute(
            update(SOURCES)
            .where(SOURCES.c.peer_id == rotation.old_id)
            .values(peer_id=rotation.new_id)
        )
        conn.execute(
            update(ARTIFACT_READERS)
            .where(ARTIFACT_READERS.c.node_id == rotation.old_id)
            .values(node_id=rotation.new_id)
        )
    conn.execute(delete(PEERS).where(PEERS.c.node_id == rotation.old_id))


def _revocation(conn: Connection, st: StoredStatement, _now: datetime) -> None:
    assert isinstance(st.statement, KeyRevocation)
    _key_row(conn, st.statement.revoked_id, {"revocation_id": st.id})


def _vouch(conn: Connection, st: StoredStatement, _now: datetime) -> None:
    """The newest vouch or unvouch of a key for an author replaces an older one; an older one
    arriving late changes nothing (ties: the larger statement id, so every node agrees)."""
    said = st.statement
    assert isinstance(said, Vouch | Unvouch)
    depth = said.depth if isinstance(said, Vouch) else 0
    note = said.note if isinstance(said, Vouch) else said.reason
    key = (VOUCHES.c.voucher_id == st.signer_id) & (VOUCHES.c.author_id == said.author_id)
    row = conn.execute(select(VOUCHES.c.signed_at_ms, VOUCHES.c.statement_id).where(key)).first()
    values = {"depth": depth, "signed_at_ms": st.signed_at_ms, "statement_id": st.id, "note": note}
    if row is None:
        conn.execute(
            insert(VOUCHES).values(voucher_id=st.signer_id, author_id=said.author_id, **values)
        )
    elif (row.signed_at_ms, row.statement_id) < (st.signed_at_ms, st.id):
        conn.execute(update(VOUCHES).where(key).values(**values))


#: The effect of each statement type.
APPLY: dict[type[Statement], Callable[[Connection, StoredStatement, datetime], None]] = {
    Tombstone: _tombstone,
    KeyRotation: _rotation,
    KeyRevocation: _revocation,
    Vouch: _vouch,
    Unvouch: _vouch,
}
