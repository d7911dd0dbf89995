"""Introductions: the vouch (or unvouch) in force per signer key and author.

Old stores have no vouches: every record was taken in from a trusted author, as before.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vouches",
        sa.Column("voucher_id", sa.String(40), primary_key=True),
        sa.Column("author_id", sa.String(40), primary_key=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("signed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("statement_id", sa.String(64), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vouches")
