"""Privacy: each record's signed privacy guarantee as filterable columns, and the budget
ledger of private pipelines.

Old records have no guarantee (their values are exact): the columns stay NULL and empty.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("privacy_epsilon", sa.Float(), nullable=True))
        batch.add_column(sa.Column("privacy_delta", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("privacy_protected", sa.String(16), nullable=False, server_default="")
        )
    op.create_table(
        "privacy_ledger",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("study", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("protected", sa.String(16), nullable=False),
        sa.Column("accountant", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_index("ix_privacy_ledger_pipeline", "privacy_ledger", ["pipeline"])


def downgrade() -> None:
    op.drop_table("privacy_ledger")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("privacy_protected")
        batch.drop_column("privacy_delta")
        batch.drop_column("privacy_epsilon")
