"""A platform version can be deprecated (retired from use) and restored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "training"


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("deprecated_at", sa.DateTime(timezone=True), nullable=True), schema=S)
    op.add_column("model_versions", sa.Column("deprecation_reason", sa.Text, nullable=False,
                                              server_default=""), schema=S)
    # The active version is never deprecated (the service refuses it; PostgreSQL holds it too).
    op.create_check_constraint("ck_model_versions_active_not_deprecated", "model_versions",
                               "status <> 'active' OR deprecated_at IS NULL", schema=S)


def downgrade() -> None:
    op.drop_constraint("ck_model_versions_active_not_deprecated", "model_versions", schema=S)
    op.drop_column("model_versions", "deprecation_reason", schema=S)
    op.drop_column("model_versions", "deprecated_at", schema=S)
