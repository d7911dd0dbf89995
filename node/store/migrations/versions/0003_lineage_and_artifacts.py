"""Lineage, provenance and models: record parents, the peers a record was found at, the
image size bucket, and the artifacts a node holds.

Old records stay valid: their image size bucket is empty, they have no parents, and no
peer is known to have served them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(
            sa.Column("task_image_size_bucket", sa.String(16), nullable=False, server_default="")
        )
    op.create_table(
        "record_parents",
        sa.Column(
            "record_seq",
            sa.Integer(),
            sa.ForeignKey("records.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("parent_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_record_parents_parent_id", "record_parents", ["parent_id"])
    op.create_table(
        "record_sources",
        sa.Column(
            "record_seq",
            sa.Integer(),
            sa.ForeignKey("records.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("peer_id", sa.String(40), primary_key=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=True),
        sa.Column("base_model", sa.String(200), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("group_name", sa.String(255), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("author", sa.String(40), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_artifacts_record_id", "artifacts", ["record_id"])
    op.create_index("ix_artifacts_group_name", "artifacts", ["group_name"])
    op.create_table(
        "artifact_readers",
        sa.Column(
            "artifact_id",
            sa.String(64),
            sa.ForeignKey("artifacts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("node_id", sa.String(40), primary_key=True),
    )


def downgrade() -> None:
    for table in ("artifact_readers", "artifacts", "record_sources", "record_parents"):
        op.drop_table(table)
    with op.batch_alter_table("records") as batch:
        batch.drop_column("task_image_size_bucket")
