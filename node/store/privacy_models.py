"""The privacy budget ledger's table: one row per private release of a pipeline's data.

Never published, never sent: it names pipelines and studies by this node's pseudonyms only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Float, Index, Integer, Table
from sqlmodel import Field, SQLModel

__all__ = ["PRIVACY_LEDGER", "PrivacyLedgerRow"]


class PrivacyLedgerRow(SQLModel, table=True):
    """A private release: charged in full before it starts, settled to what it spent."""

    __tablename__ = "privacy_ledger"
    __table_args__ = (Index("ix_privacy_ledger_pipeline", "pipeline"),)

    id: int | None = Field(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    #: The pipeline's pseudonym (HMAC with the node secret): the ledger's key.
    pipeline: str = Field(max_length=64)
    study: str = Field(max_length=64)
    #: "study" (a tuning study); "federation" for a federated run.
    kind: str = Field(max_length=16)
    epsilon: float = Field(sa_column=Column(Float, nullable=False))
    delta: float = Field(sa_column=Column(Float, nullable=False))
    protected: str = Field(max_length=16)
    accountant: str = Field(max_length=8)
    #: "charged" (planned in full, before the release) or "settled" (what it spent).
    state: str = Field(max_length=16)


PRIVACY_LEDGER: Table = SQLModel.metadata.tables["privacy_ledger"]
