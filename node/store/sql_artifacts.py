"""The rows of the models a node holds: one per artifact, plus the nodes allowed to fetch it.

The files live under HOME/models (node/artifacts/store.py places them); here are only the
rows, read and written inside the caller's transaction. Must never decode or check a
manifest (the artifact store verified it) nor keep a reader twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Row, delete, insert, select

from gridpoint.node.store.base import StoredArtifact
from gridpoint.node.store.models import ARTIFACT_READERS as READERS
from gridpoint.node.store.models import ARTIFACTS, MODEL_VERSIONS
from gridpoint.node.store.sql_rows import as_utc

__all__ = ["add", "add_readers", "find", "listed", "registered", "remove", "version_of"]

#: Ids per IN (...) clause: well under every database's bound on bound parameters.
_BATCH = 500


def add(conn: Connection, artifact: StoredArtifact) -> bool:
    """Inserts the artifact and its readers; False (readers added) when already there."""
    present = conn.scalar(select(ARTIFACTS.c.id).where(ARTIFACTS.c.id == artifact.id))
    if present is None:
        conn.execute(
            insert(ARTIFACTS).values(
                id=artifact.id,
                kind=artifact.kind,
                record_id=artifact.record_id,
                base_model=artifact.base_model,
                method=artifact.method,
                group_name=artifact.group,
                score=artifact.score,
                score_metric=artifact.metric,
                author=artifact.author,
                manifest=artifact.manifest,
                size=artifact.size,
                created_at=artifact.created_at,
            )
        )
    add_readers(conn, artifact.id, artifact.readers)
    return present is None


def add_readers(conn: Connection, artifact_id: str, readers: Sequence[str]) -> None:
    """Adds the readers the artifact does not have yet."""
    present = set(
        conn.scalars(select(READERS.c.node_id).where(READERS.c.artifact_id == artifact_id))
    )
    fresh = sorted(set(readers) - present)
    if fresh:
        conn.execute(insert(READERS), [{"artifact_id": artifact_id, "node_id": n} for n in fresh])


def find(conn: Connection, id_prefix: str, limit: int) -> list[StoredArtifact]:
    """Artifacts whose id starts with id_prefix, by id, at most limit."""
    # A whole id is found through the primary key; a prefix by a scan.
    match = (
        ARTIFACTS.c.id == id_prefix
        if len(id_prefix) == 64
        else ARTIFACTS.c.id.startswith(id_prefix, autoescape=True)
    )
    rows = conn.execute(select(ARTIFACTS).where(match).order_by(ARTIFACTS.c.id).limit(limit)).all()
    return _artifacts(conn, rows)


def listed(conn: Connection, group: str | None) -> list[StoredArtifact]:
    """Every artifact (or a group's), newest first."""
    stmt = select(ARTIFACTS).order_by(ARTIFACTS.c.created_at.desc(), ARTIFACTS.c.id)
    if group is not None:
        stmt = stmt.where(ARTIFACTS.c.group_name == group)
    return _artifacts(conn, conn.execute(stmt).all())


def remove(conn: Connection, artifact_id: str) -> bool:
    """Deletes the artifact's readers and row; False when it was not there."""
    conn.execute(delete(READERS).where(READERS.c.artifact_id == artifact_id))
    return bool(conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.id == artifact_id)).rowcount)


def registered(conn: Connection) -> set[str]:
    """Ids of the artifacts some registered model version names."""
    return set(conn.scalars(select(MODEL_VERSIONS.c.artifact_id).distinct()))


def version_of(conn: Connection, artifact_id: str) -> tuple[str, int] | None:
    """One registered (name, version) naming the artifact, if any."""
    row = conn.execute(
        select(MODEL_VERSIONS.c.name, MODEL_VERSIONS.c.version)
        .where(MODEL_VERSIONS.c.artifact_id == artifact_id)
        .limit(1)
    ).first()
    return None if row is None else (str(row.name), int(row.version))


def _artifacts(conn: Connection, rows: Sequence[Row[tuple[object, ...]]]) -> list[StoredArtifact]:
    ids = [str(r.id) for r in rows]
    readers: dict[str, list[str]] = {}
    for i in range(0, len(ids), _BATCH):
        pairs = conn.execute(
            select(READERS.c.artifact_id, READERS.c.node_id)
            .where(READERS.c.artifact_id.in_(ids[i : i + _BATCH]))
            .order_by(READERS.c.node_id)
        )
        for artifact, node in pairs:
            readers.setdefault(artifact, []).append(node)
    return [
        StoredArtifact(
            id=r.id,
            kind=r.kind,
            record_id=r.record_id,
            base_model=r.base_model,
            method=r.method,
            group=r.group_name,
            score=r.score,
            author=r.author,
            manifest=r.manifest,
            size=r.size,
            created_at=as_utc(r.created_at),
            readers=tuple(readers.get(r.id, ())),
            metric=r.score_metric,
        )
        for r in rows
    ]
