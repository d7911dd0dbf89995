"""The model registry: names, their numbered versions (each an artifact held here) and their
aliases; and the metric an artifact's score measures.

Artifacts kept before this revision keep their score with an unknown metric ("").

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(
            sa.Column("score_metric", sa.String(64), nullable=False, server_default="")
        )
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column(
            "name",
            sa.String(100),
            sa.ForeignKey("registered_models.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("artifact_id", sa.String(64), sa.ForeignKey("artifacts.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", "artifact_id", name="uq_model_versions_artifact"),
    )
    op.create_index("ix_model_versions_artifact_id", "model_versions", ["artifact_id"])
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["model_versions.name", "model_versions.version"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    for table in ("model_aliases", "model_versions", "registered_models"):
        op.drop_table(table)
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("score_metric")
