"""Per-organization adapted versions and adaptation jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "training"


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("organization_id", sa.String(64), nullable=True), schema=S)
    op.add_column("model_versions", sa.Column("stale", sa.Boolean, nullable=False,
                                              server_default=sa.text("false")), schema=S)
    op.add_column("model_versions", sa.Column("replaced_version", sa.BigInteger, nullable=True), schema=S)
    op.drop_index("uq_model_versions_one_active", table_name="model_versions", schema=S)
    op.create_index("uq_model_versions_one_active_per_scope", "model_versions",
                    ["name", sa.text("coalesce(organization_id, '')")], unique=True, schema=S,
                    postgresql_where=sa.text("status = 'active'"))
    op.add_column("training_jobs", sa.Column("kind", sa.String(16), nullable=False, server_default="training"),
                  schema=S)
    # an adaptation the gate refused ends "rejected"
    op.drop_constraint("ck_training_jobs_status", "training_jobs", schema=S, type_="check")
    op.create_check_constraint("ck_training_jobs_status", "training_jobs",
                               "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'rejected')",
                               schema=S)
    op.add_column("training_jobs", sa.Column("organization_id", sa.String(64), nullable=True), schema=S)
    op.create_index("ix_training_jobs_org_created", "training_jobs", ["organization_id", "created_at"], schema=S,
                    postgresql_where=sa.text("organization_id IS NOT NULL"))
    op.create_table(
        "adaptation_inputs",
        sa.Column("job_id", UUID(as_uuid=False), sa.ForeignKey(f"{S}.training_jobs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("cells_zip", sa.LargeBinary, nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("adaptation_inputs", schema=S)
    op.drop_index("ix_training_jobs_org_created", table_name="training_jobs", schema=S)
    op.drop_column("training_jobs", "organization_id", schema=S)
    op.drop_column("training_jobs", "kind", schema=S)
    op.execute(f"UPDATE \"{S}\".training_jobs SET status = 'failed' WHERE status = 'rejected'")
    op.drop_constraint("ck_training_jobs_status", "training_jobs", schema=S, type_="check")
    op.create_check_constraint("ck_training_jobs_status", "training_jobs",
                               "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", schema=S)
    op.drop_index("uq_model_versions_one_active_per_scope", table_name="model_versions", schema=S)
    op.execute(f'DELETE FROM "{S}".model_versions WHERE organization_id IS NOT NULL')
    op.create_index("uq_model_versions_one_active", "model_versions", ["name"], unique=True, schema=S,
                    postgresql_where=sa.text("status = 'active'"))
    op.drop_column("model_versions", "replaced_version", schema=S)
    op.drop_column("model_versions", "stale", schema=S)
    op.drop_column("model_versions", "organization_id", schema=S)
