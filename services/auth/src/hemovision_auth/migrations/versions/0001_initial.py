"""auth schema: organizations, users, refresh tokens, signing keys, API keys, invitations, e-mail tokens

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "auth"


def _ts(name: str, nullable: bool = True, now: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.func.now() if now else None)


def upgrade() -> None:
    op.execute(f'CREATE SCHEMA IF NOT EXISTS "{S}"')
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at", nullable=False, now=True),
        schema=S,
    )
    op.create_index(
        "uq_organizations_name_lower", "organizations", [sa.text("lower(name)")], unique=True, schema=S
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("organization_id", sa.Uuid, sa.ForeignKey(f"{S}.organizations.id", ondelete="CASCADE"), nullable=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
        _ts("created_at", nullable=False, now=True),
        _ts("password_changed_at"),
        sa.CheckConstraint(
            "role IN ('lab_user', 'org_admin', 'ml_engineer', 'platform_admin')", name="ck_users_role"
        ),
        schema=S,
    )
    op.create_index("ix_auth_users_organization_id", "users", ["organization_id"], schema=S)
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family_id", sa.Uuid, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("access_jti", sa.String(64), nullable=True),
        _ts("access_expires_at"),
        _ts("created_at", nullable=False, now=True),
        _ts("expires_at", nullable=False),
        _ts("used_at"),
        _ts("revoked_at"),
        schema=S,
    )
    op.create_index("ix_auth_refresh_tokens_user_id", "refresh_tokens", ["user_id"], schema=S)
    op.create_index("ix_auth_refresh_tokens_family_id", "refresh_tokens", ["family_id"], schema=S)
    op.create_index("ix_auth_refresh_tokens_access_jti", "refresh_tokens", ["access_jti"], schema=S)
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("private_key_pem", sa.Text, nullable=False),
        sa.Column("public_key_pem", sa.Text, nullable=False),
        _ts("created_at", nullable=False, now=True),
        sa.Column("current", sa.Boolean, nullable=False, server_default=sa.false()),
        _ts("retired_at"),
        schema=S,
    )
    op.create_index(
        "uq_signing_keys_one_current", "signing_keys", ["current"], unique=True, schema=S,
        postgresql_where=sa.text("current"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        _ts("created_at", nullable=False, now=True),
        _ts("last_used_at"),
        _ts("revoked_at"),
        schema=S,
    )
    op.create_index("ix_auth_api_keys_user_id", "api_keys", ["user_id"], schema=S)
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "organization_id", sa.Uuid, sa.ForeignKey(f"{S}.organizations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("invited_by", sa.Uuid, sa.ForeignKey(f"{S}.users.id", ondelete="SET NULL"), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("expires_at", nullable=False),
        _ts("accepted_at"),
        sa.CheckConstraint("role IN ('lab_user', 'org_admin')", name="ck_invitations_role"),
        schema=S,
    )
    op.create_index("ix_auth_invitations_organization_id", "invitations", ["organization_id"], schema=S)
    op.create_table(
        "email_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey(f"{S}.users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _ts("created_at", nullable=False, now=True),
        _ts("expires_at", nullable=False),
        _ts("used_at"),
        sa.CheckConstraint("purpose IN ('verify', 'reset')", name="ck_email_tokens_purpose"),
        schema=S,
    )
    op.create_index("ix_auth_email_tokens_user_id", "email_tokens", ["user_id"], schema=S)


def downgrade() -> None:
    for table in ("email_tokens", "invitations", "api_keys", "signing_keys", "refresh_tokens", "users", "organizations"):
        op.drop_table(table, schema=S)
