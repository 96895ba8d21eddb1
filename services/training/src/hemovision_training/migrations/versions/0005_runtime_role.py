"""the runtime role hemovision_training_app: what the training server and worker do on schema
training, nothing else

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08

The training server, its Celery worker and `register-existing` sign in as this role; only
`migrate` signs in as the schema owner (docs/decisions.md 55). It gets USAGE on schema
`training`, per table exactly what the code runs (hemovision_training.repository, .rollouts) and
USAGE on the two serial ids' sequences, nothing on any other schema: a compromised training
process cannot touch history's append-only audit log or auth's accounts, nor change training's
own tables' definitions. The role is cluster-wide, so it is created only if missing
(hemovision_database.create_login_role_sql: LOGIN NOINHERIT, no password until one is set); the
downgrade revokes its privileges and never drops it. Names are frozen here; tables.py names the
role for the code.
"""

from __future__ import annotations

from alembic import op

from hemovision_database import create_login_role_sql, grant_runtime_role_sql, revoke_runtime_role_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "training"
APP_ROLE = "hemovision_training_app"
# Nothing deletes a version, a job, a rollout or an audit row (deprecation, a terminal status and
# `forwarded` are updates); only an ended adaptation's cell snapshot is deleted. SELECT ... FOR
# UPDATE (the registry lock, the running rollout) needs UPDATE.
PRIVILEGES = {
    "model_versions": "SELECT, INSERT, UPDATE",
    "training_jobs": "SELECT, INSERT, UPDATE",
    "adaptation_inputs": "SELECT, INSERT, DELETE",
    "rollouts": "SELECT, INSERT, UPDATE",
    "audit_log": "SELECT, INSERT, UPDATE (forwarded)",  # an event is never rewritten, only marked sent
}
SEQUENCES = ("model_versions_id_seq", "audit_log_id_seq")  # the BIGSERIAL ids


def upgrade() -> None:
    op.execute(create_login_role_sql(APP_ROLE))
    for statement in grant_runtime_role_sql(S, APP_ROLE, PRIVILEGES, SEQUENCES):
        op.execute(statement)


def downgrade() -> None:
    for statement in revoke_runtime_role_sql(S, APP_ROLE):
        op.execute(statement)
