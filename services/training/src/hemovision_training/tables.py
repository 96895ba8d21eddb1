"""The `training` schema: model registry, training jobs and the local audit log."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

SCHEMA = "training"
# The runtime role the server, the worker and `register-existing` sign in as (migration 0005
# creates and grants it; only `migrate` signs in as the schema owner). docs/decisions.md 55.
TRAINING_APP_ROLE = "hemovision_training_app"
metadata = MetaData(schema=SCHEMA)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    # registered | active | retired
    Column("status", String(16), nullable=False, server_default="registered"),
    Column("metrics", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("training_config", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("data_hash", String(128), nullable=False, server_default=""),
    Column("parent_version", BigInteger, nullable=True),
    Column("created_by", String(64), nullable=False, server_default=""),
    Column("job_id", UUID(as_uuid=False), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("activated_at", DateTime(timezone=True), nullable=True),
    Column("was_active", Boolean, nullable=False, server_default=text("false")),
    # An adapted version belongs to one organization (NULL = a platform version); its
    # parent_version is the platform version it was fine-tuned from.
    Column("organization_id", String(64), nullable=True),
    # Adapted versions only: the platform's active version is no longer its base.
    Column("stale", Boolean, nullable=False, server_default=text("false")),
    # Adapted versions only: the organization's version it replaced (NULL = the platform's);
    # a rollback goes back to it.
    Column("replaced_version", BigInteger, nullable=True),
    # Deprecated (retired from use) by an ml_engineer: not activated again until restored.
    Column("deprecated_at", DateTime(timezone=True), nullable=True),
    Column("deprecation_reason", Text, nullable=False, server_default=""),
    CheckConstraint("status <> 'active' OR deprecated_at IS NULL", name="ck_model_versions_active_not_deprecated"),
    UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
    # At most one active version per model name and scope (the platform, or one organization),
    # enforced by PostgreSQL.
    Index(
        "uq_model_versions_one_active_per_scope",
        "name",
        text("coalesce(organization_id, '')"),
        unique=True,
        postgresql_where=text("status = 'active'"),
    ),
)

training_jobs = Table(
    "training_jobs",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    # queued | running | succeeded | failed | cancelled
    Column("status", String(16), nullable=False),
    Column("config", JSONB, nullable=False),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("total_epochs", Integer, nullable=False, server_default="0"),
    Column("metrics", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("phase", String(200), nullable=False, server_default=""),
    Column("error", Text, nullable=False, server_default=""),
    Column("model_name", String(100), nullable=False),
    Column("model_version", BigInteger, nullable=True),
    Column("created_by", String(64), nullable=False, server_default=""),
    Column("celery_task_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # "training" (a platform job) or "adaptation" (one organization's "adapt to our lab"; the
    # same lifecycle, heartbeat, reaper and cancellation).
    Column("kind", String(16), nullable=False, server_default="training"),
    Column("organization_id", String(64), nullable=True),
    Index("ix_training_jobs_created_at", "created_at"),
    Index("ix_training_jobs_org_created", "organization_id", "created_at",
          postgresql_where=text("organization_id IS NOT NULL")),
    Index("ix_training_jobs_running_heartbeat", "heartbeat_at", postgresql_where=text("status = 'running'")),
)

# The reviewed cells one adaptation trains on (history's export ZIP, read at start with the
# caller's token), kept in the database so the service and the worker need no shared disk;
# deleted when the job ends: an organization's cells live in history, not here.
adaptation_inputs = Table(
    "adaptation_inputs",
    metadata,
    Column("job_id", UUID(as_uuid=False), ForeignKey(f"{SCHEMA}.training_jobs.id", ondelete="CASCADE"),
           primary_key=True),
    Column("cells_zip", LargeBinary, nullable=False),
)

# Safe rollouts (canary / shadow) of a candidate beside the active version (migration 0004).
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("candidate_version", BigInteger, nullable=False),
    Column("baseline_version", BigInteger, nullable=False),
    Column("mode", String(16), nullable=False),  # canary | shadow
    Column("canary_percent", Integer, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="running"),  # running | promoted | aborted
    Column("started_by", String(64), nullable=False, server_default=""),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("start_reason", Text, nullable=False, server_default=""),
    Column("ended_by", String(64), nullable=False, server_default=""),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("end_reason", Text, nullable=False, server_default=""),
    CheckConstraint("mode IN ('canary', 'shadow')", name="ck_rollouts_mode"),
    CheckConstraint("status IN ('running', 'promoted', 'aborted')", name="ck_rollouts_status"),
    CheckConstraint(
        "(mode = 'canary' AND canary_percent BETWEEN 1 AND 50) OR (mode = 'shadow' AND canary_percent = 0)",
        name="ck_rollouts_percent"),
    CheckConstraint("candidate_version <> baseline_version", name="ck_rollouts_candidate_not_baseline"),
    CheckConstraint("(status = 'running') = (ended_at IS NULL)", name="ck_rollouts_ended"),
    # At most one running rollout per model, enforced by PostgreSQL.
    Index("uq_rollouts_one_running", "name", unique=True, postgresql_where=text("status = 'running'")),
    Index("ix_rollouts_name_started", "name", "started_at"),
)

# Every activation / force / rollback is written here in the same transaction as the
# registry change, and also sent to the history service (best effort): nothing is lost.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("user_id", String(64), nullable=False, server_default=""),
    Column("organization_id", String(64), nullable=False, server_default=""),
    Column("role", String(32), nullable=False, server_default=""),
    Column("action", String(64), nullable=False),
    Column("target_type", String(64), nullable=False),
    Column("target_id", String(200), nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Whether the event also reached the history service.
    Column("forwarded", Boolean, nullable=False, server_default=text("false")),
)
