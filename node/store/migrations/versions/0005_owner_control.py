"""Owner's control: statements (tombstones, key rotations and revocations), withdrawn record
ids, the key chain, record audiences, sharing variants and the outbound ledger.

Old stores keep every record: none has an audience, nothing is withdrawn, no key rotated.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statements",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("payload_type", sa.String(128), nullable=False),
        sa.Column("signer_id", sa.String(40), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_statements_signer_id", "statements", ["signer_id"])
    op.create_table(
        "withdrawn",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("signer_id", sa.String(40), primary_key=True),
        sa.Column("statement_id", sa.String(64), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "identity_keys",
        sa.Column("node_id", sa.String(40), primary_key=True),
        sa.Column("successor_id", sa.String(40), nullable=True),
        sa.Column("rotated_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("successor_cert", sa.LargeBinary(), nullable=True),
        sa.Column("rotation_id", sa.String(64), nullable=True),
        sa.Column("revocation_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_identity_keys_successor_id", "identity_keys", ["successor_id"])
    op.create_table(
        "record_audience",
        sa.Column(
            "record_seq",
            sa.Integer(),
            sa.ForeignKey("records.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("node_id", sa.String(40), primary_key=True),
    )
    op.create_table(
        "shared_variants",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("variant_key", sa.String(64), primary_key=True),
        sa.Column("variant_id", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "outbound_ledger",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_outbound_ledger_peer_at", "outbound_ledger", ["peer_id", "at"])
    op.create_index("ix_outbound_ledger_subject_id", "outbound_ledger", ["subject_id"])
    op.create_table(
        "outbound_ledger_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("peer_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "outbound_ledger_days",
        "outbound_ledger",
        "shared_variants",
        "record_audience",
        "identity_keys",
        "withdrawn",
        "statements",
    ):
        op.drop_table(table)
