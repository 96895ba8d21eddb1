"""sign-in lockout counters, sign-in sessions (origin of each refresh family), audit outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "auth"


def _ts(name: str, nullable: bool = True, now: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.func.now() if now else None)


def upgrade() -> None:
    # Failed sign-ins per normalised e-mail (known or not, so a lockout does not reveal an account).
    op.create_table(
        "login_attempts",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        _ts("window_started_at"),
        _ts("last_failure_at"),
        sa.Column("lockouts", sa.Integer, nullable=False, server_default="0"),
        _ts("locked_until"),
        schema=S,
    )
    # One row per refresh-token family (a sign-in), with where it came from.
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE"), nullable=False),
        _ts("created_at", nullable=False, now=True),
        _ts("last_used_at", nullable=False, now=True),
        sa.Column("client_ip", sa.String(64), nullable=False, server_default=""),
        sa.Column("user_agent", sa.String(256), nullable=False, server_default=""),
        _ts("revoked_at"),
        schema=S,
    )
    op.create_index("ix_auth_sessions_user_id", "sessions", ["user_id"], schema=S)
    # Families that exist already become sessions of unknown origin.
    op.execute(
        f"""
        INSERT INTO "{S}".sessions (id, user_id, created_at, last_used_at, revoked_at)
        SELECT family_id, (array_agg(user_id))[1], min(created_at), max(created_at),
               CASE WHEN bool_and(revoked_at IS NOT NULL) THEN max(revoked_at) END
        FROM "{S}".refresh_tokens GROUP BY family_id
        """
    )
    # Audit events written in the transaction of the change, forwarded to history afterwards.
    op.create_table(
        "audit_outbox",
        sa.Column("id", sa.Uuid, primary_key=True),
        _ts("occurred_at", nullable=False, now=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("organization_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("user_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("target_type", sa.String(32), nullable=False, server_default=""),
        sa.Column("target_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("details_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("client_ip", sa.String(64), nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("next_attempt_at", nullable=False, now=True),
        sa.Column("last_error", sa.Text, nullable=True),
        _ts("forwarded_at"),
        schema=S,
    )
    op.create_index(
        "ix_auth_audit_outbox_pending", "audit_outbox", ["next_attempt_at"], schema=S,
        postgresql_where=sa.text("forwarded_at IS NULL"),
    )
    op.create_index("ix_auth_audit_outbox_forwarded_at", "audit_outbox", ["forwarded_at"], schema=S)


def downgrade() -> None:
    op.drop_table("audit_outbox", schema=S)
    op.drop_table("sessions", schema=S)
    op.drop_table("login_attempts", schema=S)
