"""audit log: client_ip, source, filter indexes, append-only trigger, the retention and runtime
roles; per-organization retention policies

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 17:50:00

Roles are cluster-wide (every database of the cluster sees them), so they are created only if
missing, and a concurrent creation by another database's migration is not an error. They are
created LOGIN without a password: under password authentication nobody can sign in as them until
an operator sets one (`ALTER ROLE ... PASSWORD ...`); under the development cluster's trust
authentication they sign in as they are. The downgrade never drops them (other databases of the
cluster may hold their privileges). Names are frozen here; tables.py names them for the code.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RETENTION_ROLE = "hemovision_audit_retention"
APP_ROLE = "hemovision_history_app"


def _create_role(name: str) -> None:
    op.execute(f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
    CREATE ROLE {name} LOGIN NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;  -- created concurrently by another database's migration
END $$""")


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("client_ip", sa.String(length=64), server_default="", nullable=False),
                  schema="history")
    op.add_column("audit_events", sa.Column("source", sa.String(length=32), server_default="history", nullable=False),
                  schema="history")
    op.create_index("ix_audit_events_org_user_created", "audit_events",
                    ["organization_id", "user_id", sa.literal_column("created_at DESC")], schema="history")
    op.create_index("ix_audit_events_org_target", "audit_events", ["organization_id", "target_id"], schema="history")

    op.create_table(
        "retention_policies",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("blob_days", sa.Integer(), nullable=True),
        sa.Column("record_days", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(length=64), server_default="", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("organization_id"),
        sa.CheckConstraint("blob_days IS NULL OR blob_days >= 0", name="ck_retention_blob_days"),
        sa.CheckConstraint("record_days IS NULL OR record_days >= 1", name="ck_retention_record_days"),
        schema="history",
    )

    # Append-only: UPDATE and TRUNCATE are refused for everyone (owner and superuser included: a
    # trigger fires for them too), DELETE unless current_user is the retention role.
    op.execute(f"""
CREATE OR REPLACE FUNCTION history.audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_user = '{RETENTION_ROLE}' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'history.audit_events is append-only: % refused for role %', TG_OP, current_user
    USING ERRCODE = 'insufficient_privilege';
END $$""")
    op.execute("""
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON history.audit_events
FOR EACH ROW EXECUTE FUNCTION history.audit_events_append_only()""")
    op.execute("""
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON history.audit_events
FOR EACH STATEMENT EXECUTE FUNCTION history.audit_events_append_only()""")

    _create_role(RETENTION_ROLE)
    _create_role(APP_ROLE)
    # The retention job: reads and deletes old audit rows, nothing else.
    op.execute(f"GRANT USAGE ON SCHEMA history TO {RETENTION_ROLE}")
    op.execute(f"GRANT SELECT, DELETE ON history.audit_events TO {RETENTION_ROLE}")
    # The migrating (owner) role may SET ROLE to it, so that a purge run with the owner's URL
    # (the development stack) deletes audit rows only inside a `SET LOCAL ROLE` transaction.
    op.execute(f"""
DO $$
BEGIN
  IF NOT pg_has_role(current_user, '{RETENTION_ROLE}', 'MEMBER') THEN
    GRANT {RETENTION_ROLE} TO CURRENT_USER;
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'cannot grant {RETENTION_ROLE} to the migrating role: the purge job needs its own URL';
END $$""")
    # The runtime role: everything the server does, and no UPDATE/DELETE on the audit log.
    op.execute(f"GRANT USAGE ON SCHEMA history TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON history.audit_events TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON history.predictions, history.batches, "
               f"history.batch_items, history.retention_policies TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON history.alembic_version TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA history FROM {APP_ROLE}, {RETENTION_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA history FROM {APP_ROLE}, {RETENTION_ROLE}")
    op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON history.audit_events")
    op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON history.audit_events")
    op.execute("DROP FUNCTION IF EXISTS history.audit_events_append_only()")
    op.drop_table("retention_policies", schema="history")
    op.drop_index("ix_audit_events_org_target", table_name="audit_events", schema="history")
    op.drop_index("ix_audit_events_org_user_created", table_name="audit_events", schema="history")
    op.drop_column("audit_events", "source", schema="history")
    op.drop_column("audit_events", "client_ip", schema="history")
