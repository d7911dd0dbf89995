"""Initial schema: signed records with their query indexes, peers, private runs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("signer_id", sa.String(40), nullable=False),
        sa.Column("payload_type", sa.String(128), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("study", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("task_type", sa.String(64), nullable=False),
        sa.Column("task_num_labels", sa.Integer(), nullable=False),
        sa.Column("task_size_bucket", sa.String(16), nullable=False),
        sa.Column("task_balance_bucket", sa.String(16), nullable=False),
        sa.Column("task_language", sa.String(8), nullable=False),
        sa.Column("task_text_length_bucket", sa.String(16), nullable=False),
        sa.Column("model_base", sa.String(200), nullable=False),
        sa.Column("model_family", sa.String(64), nullable=False),
        sa.Column("model_method", sa.String(16), nullable=False),
        sa.Column("model_num_parameters", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_records_signer_id", "records", ["signer_id"])
    op.create_index("ix_records_study", "records", ["study"])
    op.create_index("ix_records_task_type", "records", ["task_type"])
    op.create_index("ix_records_model_base", "records", ["model_base"])
    op.create_table(
        "record_params",
        sa.Column(
            "record_seq",
            sa.Integer(),
            sa.ForeignKey("records.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("num_value", sa.Float(), nullable=True),
        sa.Column("str_value", sa.String(64), nullable=True),
    )
    op.create_index("ix_record_params_name_num", "record_params", ["name", "num_value"])
    op.create_index("ix_record_params_name_str", "record_params", ["name", "str_value"])
    op.create_table(
        "record_metrics",
        sa.Column(
            "record_seq",
            sa.Integer(),
            sa.ForeignKey("records.seq", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_record_metrics_name_value", "record_metrics", ["name", "value"])
    op.create_table(
        "peers",
        sa.Column("node_id", sa.String(40), primary_key=True),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(95), nullable=False),
        sa.Column("cert_pem", sa.LargeBinary(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sync_cursor", sa.String(64), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "private_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("study_name", sa.String(255), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_private_runs_study_name", "private_runs", ["study_name"])


def downgrade() -> None:
    for table in ("private_runs", "peers", "record_metrics", "record_params", "records"):
        op.drop_table(table)
