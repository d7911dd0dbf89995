"""Pending envelopes: records refused for a reason that can pass, kept to be admitted later.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_envelopes",
        sa.Column(
            "peer_id",
            sa.String(40),
            sa.ForeignKey("peers.node_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pending_envelopes")
