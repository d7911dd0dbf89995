"""SQLModel tables of the owner's control: statements, withdrawn ids, keys, audiences,
sharing variants and the outbound ledger (created by migration 0005_owner_control), and the
vouches in force (0006_vouches).

Apart from models.py so that the record tables stay one module; both register on the same
SQLModel metadata, which tests compare with the migrations.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Table,
)
from sqlmodel import Field, SQLModel

__all__ = [
    "AUDIENCE",
    "KEYS",
    "LEDGER",
    "LEDGER_DAYS",
    "STATEMENTS",
    "VARIANTS",
    "VOUCHES",
    "WITHDRAWN",
    "IdentityKeyRow",
    "LedgerDayRow",
    "LedgerRow",
    "RecordAudienceRow",
    "SharedVariantRow",
    "StatementRow",
    "VouchRow",
    "WithdrawnRow",
]


class StatementRow(SQLModel, table=True):
    """One admitted statement, verbatim; seq is the order Sync serves statements in."""

    __tablename__ = "statements"

    seq: int | None = Field(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    id: str = Field(max_length=64, unique=True)
    payload_type: str = Field(max_length=128)
    signer_id: str = Field(max_length=40, index=True)
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signed_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class WithdrawnRow(SQLModel, table=True):
    """A record id a tombstone names, and who signed the tombstone (the record is refused only
    when that signer's chain authored it)."""

    __tablename__ = "withdrawn"

    record_id: str = Field(max_length=64, primary_key=True)
    signer_id: str = Field(max_length=40, primary_key=True)
    statement_id: str = Field(max_length=64)
    # Whether this node held the record when the tombstone arrived.
    held: bool = Field(sa_column=Column(Boolean, nullable=False))
    # The tombstone's reason, as its author wrote it (public).
    reason: str = Field(max_length=200)
    withdrawn_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class IdentityKeyRow(SQLModel, table=True):
    """A key this node knows a rotation or revocation of."""

    __tablename__ = "identity_keys"

    node_id: str = Field(max_length=40, primary_key=True)
    successor_id: str | None = Field(default=None, max_length=40, index=True)
    rotated_at_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # The successor's TLS certificate (PEM), as the rotation carried it.
    successor_cert: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    rotation_id: str | None = Field(default=None, max_length=64)
    revocation_id: str | None = Field(default=None, max_length=64)


class RecordAudienceRow(SQLModel, table=True):
    """One node id of a record's signed audience (records without one have no rows)."""

    __tablename__ = "record_audience"

    record_seq: int = Field(
        sa_column=Column(Integer, ForeignKey("records.seq", ondelete="CASCADE"), primary_key=True)
    )
    node_id: str = Field(max_length=40, primary_key=True)


class SharedVariantRow(SQLModel, table=True):
    """A separately signed variant of one of this node's records, made for one audience and
    set of parts (key: their digest), so every peer of that share gets the same bytes."""

    __tablename__ = "shared_variants"

    record_id: str = Field(max_length=64, primary_key=True)
    variant_key: str = Field(max_length=64, primary_key=True)
    variant_id: str = Field(max_length=64)
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class LedgerRow(SQLModel, table=True):
    """One thing that left this node: never its payload."""

    __tablename__ = "outbound_ledger"
    __table_args__ = (Index("ix_outbound_ledger_peer_at", "peer_id", "at"),)

    id: int | None = Field(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    peer_id: str = Field(max_length=40)
    # "record", "statement", "answer" (a live query answer), "manifest" or "model".
    kind: str = Field(max_length=16)
    item_id: str = Field(max_length=64)
    # The record the item stands for (a variant's original; else the item itself).
    subject_id: str = Field(max_length=64, index=True)
    rule: str = Field(max_length=64)
    count: int = Field(default=1)


class LedgerDayRow(SQLModel, table=True):
    """A day's entries for one peer, kind and rule, counted once their details aged out."""

    __tablename__ = "outbound_ledger_days"

    day: str = Field(max_length=10, primary_key=True)
    peer_id: str = Field(max_length=40, primary_key=True)
    kind: str = Field(max_length=16, primary_key=True)
    rule: str = Field(max_length=64, primary_key=True)
    count: int = Field(sa_column=Column(BigInteger, nullable=False))


class VouchRow(SQLModel, table=True):
    """The newest Vouch or Unvouch (by signing time) one key signed for one author."""

    __tablename__ = "vouches"

    voucher_id: str = Field(max_length=40, primary_key=True)
    author_id: str = Field(max_length=40, primary_key=True)
    # How far the vouch reaches (1 to 8); 0 = withdrawn by an Unvouch.
    depth: int = Field(sa_column=Column(Integer, nullable=False))
    signed_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    statement_id: str = Field(max_length=64)
    # The vouch's note or the unvouch's reason, as its signer wrote it (public).
    note: str = Field(max_length=200)


def _table(model: type[SQLModel]) -> Table:
    return SQLModel.metadata.tables[str(model.__tablename__)]


STATEMENTS = _table(StatementRow)
WITHDRAWN = _table(WithdrawnRow)
KEYS = _table(IdentityKeyRow)
AUDIENCE = _table(RecordAudienceRow)
VARIANTS = _table(SharedVariantRow)
LEDGER = _table(LedgerRow)
LEDGER_DAYS = _table(LedgerDayRow)
VOUCHES = _table(VouchRow)
