"""the runtime role hemovision_auth_app: what the auth server does on schema auth, nothing else

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

The auth server, and its `create-admin` / `rotate-key` commands, sign in as this role; only
`migrate` signs in as the schema owner (docs/decisions.md 55). It gets USAGE on schema `auth` and
per table exactly what the code runs (hemovision_auth.repository), nothing on any other schema:
a compromised auth process cannot touch history's append-only audit log or training's registry,
nor change auth's own tables' definitions. The role is cluster-wide, so it is created only if
missing (hemovision_database.create_login_role_sql: LOGIN NOINHERIT, no password until one is
set); the downgrade revokes its privileges and never drops it. Names are frozen here;
tables.py names the role for the code.
"""

from __future__ import annotations

from alembic import op

from hemovision_database import create_login_role_sql, grant_runtime_role_sql, revoke_runtime_role_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "auth"
APP_ROLE = "hemovision_auth_app"
# No serial ids in schema auth (UUID and e-mail keys): no sequence to grant. Deletions the code
# does not run itself (a user's tokens, sessions, keys) are ON DELETE CASCADE, which PostgreSQL
# runs with the table owner's rights. SELECT ... FOR UPDATE needs UPDATE.
PRIVILEGES = {
    "organizations": "SELECT, INSERT",
    "users": "SELECT, INSERT, UPDATE, DELETE",
    "refresh_tokens": "SELECT, INSERT, UPDATE",
    "sessions": "SELECT, INSERT, UPDATE",
    "signing_keys": "SELECT, INSERT, UPDATE",
    "api_keys": "SELECT, INSERT, UPDATE",
    "invitations": "SELECT, INSERT, UPDATE, DELETE",  # a new invitation replaces the pending one
    "email_tokens": "SELECT, INSERT, UPDATE",
    "login_attempts": "SELECT, INSERT, UPDATE, DELETE",  # counters reset on success, pruned
    # a forwarding queue: leased, marked forwarded or deferred, pruned once forwarded; the
    # recorded event itself (action, actor, target, details) cannot be rewritten
    "audit_outbox": "SELECT, INSERT, DELETE, UPDATE (attempts, next_attempt_at, last_error, forwarded_at)",
}


def upgrade() -> None:
    op.execute(create_login_role_sql(APP_ROLE))
    for statement in grant_runtime_role_sql(S, APP_ROLE, PRIVILEGES):
        op.execute(statement)


def downgrade() -> None:
    for statement in revoke_runtime_role_sql(S, APP_ROLE):
        op.execute(statement)
