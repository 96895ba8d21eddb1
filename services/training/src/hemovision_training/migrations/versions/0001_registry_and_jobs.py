"""Model registry, training jobs and audit log in schema `training`.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "training"


def upgrade() -> None:
    op.execute(f'CREATE SCHEMA IF NOT EXISTS "{S}"')
    op.create_table(
        "model_versions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="registered"),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("training_config", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("data_hash", sa.String(128), nullable=False, server_default=""),
        sa.Column("parent_version", sa.BigInteger, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("job_id", UUID(as_uuid=False), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("was_active", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        sa.CheckConstraint("status IN ('registered', 'active', 'retired')", name="ck_model_versions_status"),
        sa.CheckConstraint("version > 0", name="ck_model_versions_version_positive"),
        schema=S,
    )
    op.create_index(
        "uq_model_versions_one_active",
        "model_versions",
        ["name"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "training_jobs",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", JSONB, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_epochs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("phase", sa.String(200), nullable=False, server_default=""),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.BigInteger, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("celery_task_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="ck_training_jobs_status"
        ),
        schema=S,
    )
    op.create_index("ix_training_jobs_created_at", "training_jobs", ["created_at"], schema=S)
    op.create_index(
        "ix_training_jobs_running_heartbeat",
        "training_jobs",
        ["heartbeat_at"],
        schema=S,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("user_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("organization_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("role", sa.String(32), nullable=False, server_default=""),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(64), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=False),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("forwarded", sa.Boolean, nullable=False, server_default=sa.text("false")),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("audit_log", schema=S)
    op.drop_index("ix_training_jobs_running_heartbeat", table_name="training_jobs", schema=S)
    op.drop_index("ix_training_jobs_created_at", table_name="training_jobs", schema=S)
    op.drop_table("training_jobs", schema=S)
    op.drop_index("uq_model_versions_one_active", table_name="model_versions", schema=S)
    op.drop_table("model_versions", schema=S)
