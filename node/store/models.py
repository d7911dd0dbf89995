"""SQLModel tables of the node store. Apart from wire messages and domain records.

The schema itself is created and changed only by migrations (node/migrations); these
models must match them, which tests/store/test_records.py checks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

__all__ = [
    "ARTIFACTS",
    "ARTIFACT_READERS",
    "METRICS",
    "MODEL_ALIASES",
    "MODEL_VERSIONS",
    "PARAMS",
    "PEERS",
    "PENDING",
    "PARENTS",
    "SOURCES",
    "PRIVATE_RUNS",
    "RECORDS",
    "REGISTERED_MODELS",
    "ArtifactReaderRow",
    "ArtifactRow",
    "ModelAliasRow",
    "ModelVersionRow",
    "PeerRow",
    "PendingEnvelopeRow",
    "PrivateRunRow",
    "RecordMetricRow",
    "RecordParentRow",
    "RecordSourceRow",
    "RecordParamRow",
    "RecordRow",
    "RegisteredModelRow",
]


class RecordRow(SQLModel, table=True):
    """One signed record: the envelope verbatim, plus the indexed fields queries use."""

    __tablename__ = "records"

    # Local storage order; the sync cursor a peer resumes from.
    seq: int | None = Field(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    id: str = Field(max_length=64, unique=True)
    signer_id: str = Field(max_length=40, index=True)
    payload_type: str = Field(max_length=128)
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signed_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    kind: str = Field(max_length=16)
    study: str = Field(max_length=64, index=True)
    status: str = Field(max_length=16)
    period: str = Field(max_length=7)
    task_type: str = Field(max_length=64, index=True)
    task_num_labels: int
    task_size_bucket: str = Field(max_length=16)
    task_balance_bucket: str = Field(max_length=16)
    task_language: str = Field(max_length=8)
    task_text_length_bucket: str = Field(max_length=16)
    task_image_size_bucket: str = Field(
        default="", sa_column=Column(String(16), nullable=False, server_default="")
    )
    model_base: str = Field(max_length=200, index=True)
    model_family: str = Field(max_length=64)
    model_method: str = Field(max_length=16)
    model_num_parameters: int = Field(sa_column=Column(BigInteger, nullable=False))
    # The record's signed privacy guarantee (NULL and "": exact values).
    privacy_epsilon: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    privacy_delta: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    privacy_protected: str = Field(
        default="", sa_column=Column(String(16), nullable=False, server_default="")
    )
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RecordParamRow(SQLModel, table=True):
    """One hyperparameter of a record, typed for range queries."""

    __tablename__ = "record_params"
    __table_args__ = (
        Index("ix_record_params_name_num", "name", "num_value"),
        Index("ix_record_params_name_str", "name", "str_value"),
    )

    record_seq: int = Field(
        sa_column=Column(Integer, ForeignKey("records.seq", ondelete="CASCADE"), primary_key=True)
    )
    name: str = Field(max_length=64, primary_key=True)
    # Numbers and booleans (as 0/1) here; categories in str_value.
    num_value: float | None = None
    str_value: str | None = Field(default=None, max_length=64)


class RecordMetricRow(SQLModel, table=True):
    """One final metric of a record."""

    __tablename__ = "record_metrics"
    # record_seq in the index: a walk in a metric's order reads the index alone (MetricWalk).
    __table_args__ = (Index("ix_record_metrics_name_value_seq", "name", "value", "record_seq"),)

    record_seq: int = Field(
        sa_column=Column(Integer, ForeignKey("records.seq", ondelete="CASCADE"), primary_key=True)
    )
    name: str = Field(max_length=64, primary_key=True)
    value: float


class RecordParentRow(SQLModel, table=True):
    """One parent of a record (lineage), indexed both ways so children can be found too."""

    __tablename__ = "record_parents"

    record_seq: int = Field(
        sa_column=Column(Integer, ForeignKey("records.seq", ondelete="CASCADE"), primary_key=True)
    )
    # Position in the record's list: lineage keeps the order the author gave.
    position: int = Field(primary_key=True)
    parent_id: str = Field(max_length=64, index=True)


class RecordSourceRow(SQLModel, table=True):
    """A trusted peer a record was found at by sync (provenance), and when first."""

    __tablename__ = "record_sources"

    record_seq: int = Field(
        sa_column=Column(Integer, ForeignKey("records.seq", ondelete="CASCADE"), primary_key=True)
    )
    peer_id: str = Field(max_length=40, primary_key=True)
    first_seen_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ArtifactRow(SQLModel, table=True):
    """A model held in this node's home (files under HOME/models/ID): kept, received or pulled.

    Never sent to a peer as a row: peers see only the signed manifest, and group_name (a
    study or federation name) never leaves the node.
    """

    __tablename__ = "artifacts"

    # Digest of the canonical manifest: the same weights have the same id on every node.
    id: str = Field(max_length=64, primary_key=True)
    kind: str = Field(max_length=16)
    record_id: str | None = Field(default=None, max_length=64, index=True)
    base_model: str = Field(max_length=200)
    method: str = Field(max_length=16)
    group_name: str = Field(max_length=255, index=True)
    score: float | None = None
    # The metric the score measures ("" when the producer did not say).
    score_metric: str = Field(
        default="", sa_column=Column(String(64), nullable=False, server_default="")
    )
    author: str = Field(max_length=40)
    # The signed manifest envelope, verbatim as its author signed it.
    manifest: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ArtifactReaderRow(SQLModel, table=True):
    """A node allowed to fetch an artifact from this node."""

    __tablename__ = "artifact_readers"

    artifact_id: str = Field(
        sa_column=Column(
            String(64), ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
        )
    )
    node_id: str = Field(max_length=40, primary_key=True)


class RegisteredModelRow(SQLModel, table=True):
    """A name models are registered under (the model registry); private to this node."""

    __tablename__ = "registered_models"

    name: str = Field(max_length=100, primary_key=True)
    # Versions are numbered 1, 2, ... and a number is never given twice, even after removal.
    last_version: int
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ModelVersionRow(SQLModel, table=True):
    """One version of a registered name: an artifact this node holds (never removed under it)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "artifact_id", name="uq_model_versions_artifact"),)

    name: str = Field(
        sa_column=Column(
            String(100),
            ForeignKey("registered_models.name", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # No cascade: an artifact cannot be removed while a version names it.
    artifact_id: str = Field(
        sa_column=Column(String(64), ForeignKey("artifacts.id"), nullable=False, index=True)
    )
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ModelAliasRow(SQLModel, table=True):
    """An alias (champion, staging, ...) of a registered name, pointing at one of its versions."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["name", "version"],
            ["model_versions.name", "model_versions.version"],
            ondelete="CASCADE",
        ),
    )

    name: str = Field(max_length=100, primary_key=True)
    alias: str = Field(max_length=64, primary_key=True)
    version: int
    set_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PeerRow(SQLModel, table=True):
    """A trusted peer: pinned certificate, address, and how far its catalog was pulled."""

    __tablename__ = "peers"

    node_id: str = Field(max_length=40, primary_key=True)
    address: str = Field(max_length=255)
    name: str = Field(max_length=255)
    fingerprint: str = Field(max_length=95)
    cert_pem: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    added_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sync_cursor: str = Field(default="", max_length=64)
    last_sync_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class PendingEnvelopeRow(SQLModel, table=True):
    """A record a peer served that was refused for a reason that can pass (an author not yet
    trusted, a signing time slightly ahead): kept to be admitted again, since the peer's
    cursor has moved past it."""

    __tablename__ = "pending_envelopes"

    peer_id: str = Field(
        sa_column=Column(
            String(40), ForeignKey("peers.node_id", ondelete="CASCADE"), primary_key=True
        )
    )
    record_id: str = Field(max_length=64, primary_key=True)
    # The canonical envelope; its signature was verified before it was kept.
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    reason: str = Field(max_length=32)
    size: int
    first_seen_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PrivateRunRow(SQLModel, table=True):
    """A run's full private record, for the organization itself; never sent to a peer."""

    __tablename__ = "private_runs"

    id: int | None = Field(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    study_name: str = Field(max_length=255, index=True)
    trial_number: int
    # JSON document: everything the run knows (config, params, curve, paths, errors).
    detail: str = Field(sa_column=Column(Text, nullable=False))
    # Id of the public record published for this run, if any.
    record_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def _table(model: type[SQLModel]) -> Table:
    return SQLModel.metadata.tables[str(model.__tablename__)]


#: The tables as SQLAlchemy Core objects, for the store's queries.
RECORDS = _table(RecordRow)
PARAMS = _table(RecordParamRow)
METRICS = _table(RecordMetricRow)
PEERS = _table(PeerRow)
PENDING = _table(PendingEnvelopeRow)
PRIVATE_RUNS = _table(PrivateRunRow)
PARENTS = _table(RecordParentRow)
SOURCES = _table(RecordSourceRow)
ARTIFACTS = _table(ArtifactRow)
ARTIFACT_READERS = _table(ArtifactReaderRow)
REGISTERED_MODELS = _table(RegisteredModelRow)
MODEL_VERSIONS = _table(ModelVersionRow)
MODEL_ALIASES = _table(ModelAliasRow)
