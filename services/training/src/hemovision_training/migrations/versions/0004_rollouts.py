"""Safe rollouts (canary / shadow) of a candidate version beside the active one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "training"


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("candidate_version", sa.BigInteger, nullable=False),
        sa.Column("baseline_version", sa.BigInteger, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("canary_percent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False, server_default="running"),
        sa.Column("started_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("start_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("ended_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text, nullable=False, server_default=""),
        sa.CheckConstraint("mode IN ('canary', 'shadow')", name="ck_rollouts_mode"),
        sa.CheckConstraint("status IN ('running', 'promoted', 'aborted')", name="ck_rollouts_status"),
        sa.CheckConstraint(
            "(mode = 'canary' AND canary_percent BETWEEN 1 AND 50) OR (mode = 'shadow' AND canary_percent = 0)",
            name="ck_rollouts_percent"),
        sa.CheckConstraint("candidate_version <> baseline_version", name="ck_rollouts_candidate_not_baseline"),
        sa.CheckConstraint("(status = 'running') = (ended_at IS NULL)", name="ck_rollouts_ended"),
        schema=S,
    )
    # At most one running rollout per model, enforced by PostgreSQL.
    op.create_index("uq_rollouts_one_running", "rollouts", ["name"], unique=True, schema=S,
                    postgresql_where=sa.text("status = 'running'"))
    op.create_index("ix_rollouts_name_started", "rollouts", ["name", "started_at"], schema=S)


def downgrade() -> None:
    op.drop_index("ix_rollouts_name_started", table_name="rollouts", schema=S)
    op.drop_index("uq_rollouts_one_running", table_name="rollouts", schema=S)
    op.drop_table("rollouts", schema=S)
