"""Tables of schema `history` (SQLAlchemy Core). The Alembic migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "history"

metadata = MetaData(schema=SCHEMA)

# Organization and user ids come from the verified token; they are stored as text so
# that this service never fails on an id format it does not own.
predictions = Table(
    "predictions",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("organization_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("idempotency_key", String(200)),
    Column("label", String(32), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("probabilities", JSONB, nullable=False),
    Column("needs_review", Boolean, nullable=False, server_default=text("false")),
    Column("review_reasons", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("model_name", String(128), nullable=False),
    Column("model_version", BigInteger, nullable=False),
    Column("temperature", Float, nullable=False, server_default=text("1.0")),
    Column("ood_score", Float, nullable=False, server_default=text("0")),
    Column("timings_ms", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("image_sha256", String(64), nullable=False, server_default=""),
    Column("filename", String(255), nullable=False, server_default=""),
    Column("sample_id", String(128), nullable=False, server_default=""),
    Column("slide_id", String(128), nullable=False, server_default=""),
    Column("note", Text, nullable=False, server_default=""),
    Column("batch_id", Uuid(as_uuid=False), ForeignKey("batches.id", ondelete="SET NULL")),
    Column("image_key", Text),
    Column("heatmap_key", Text),
    Column("reviewed_label", String(32)),
    Column("reviewed_by", String(64)),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("review_comment", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("organization_id", "idempotency_key", name="uq_predictions_org_idempotency_key"),
    # Default listing order and keyset pagination: newest first within one organization.
    Index("ix_predictions_org_created", "organization_id", text("created_at DESC"), text("id DESC")),
    Index("ix_predictions_org_label_created", "organization_id", "label", text("created_at DESC"), text("id DESC")),
    Index("ix_predictions_org_sample", "organization_id", "sample_id"),
    Index("ix_predictions_org_model_version", "organization_id", "model_version"),
    Index("ix_predictions_batch", "batch_id"),
    # Review queue: flagged first, lowest confidence, oldest first; only unreviewed rows.
    Index(
        "ix_predictions_org_review_queue",
        "organization_id",
        text("needs_review DESC"),
        "confidence",
        "created_at",
        "id",
        postgresql_where=text("reviewed_label IS NULL"),
    ),
    Index(
        "ix_predictions_org_reviewed",
        "organization_id",
        "reviewed_label",
        postgresql_where=text("reviewed_label IS NOT NULL"),
    ),
    # Retention purge: rows that still hold blobs, oldest first.
    Index(
        "ix_predictions_blobs_created",
        "created_at",
        postgresql_where=text("image_key IS NOT NULL OR heatmap_key IS NOT NULL"),
    ),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("organization_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("idempotency_key", String(200)),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("total", Integer, nullable=False),
    Column("sample_id", String(128), nullable=False, server_default=""),
    Column("slide_id", String(128), nullable=False, server_default=""),
    Column("note", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    UniqueConstraint("organization_id", "idempotency_key", name="uq_batches_org_idempotency_key"),
    Index("ix_batches_org_created", "organization_id", text("created_at DESC"), text("id DESC")),
)

batch_items = Table(
    "batch_items",
    metadata,
    Column("batch_id", Uuid(as_uuid=False), ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("index", Integer, nullable=False),
    Column("filename", String(255), nullable=False, server_default=""),
    Column("status", String(16), nullable=False),
    Column("prediction_id", Uuid(as_uuid=False), ForeignKey("predictions.id", ondelete="SET NULL")),
    Column("error", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # One row per (batch, index): a redelivered item never records twice.
    PrimaryKeyConstraint("batch_id", "index", name="pk_batch_items"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("organization_id", String(64), nullable=False, server_default=""),
    Column("user_id", String(64), nullable=False),
    Column("action", String(128), nullable=False),
    Column("target_type", String(64), nullable=False, server_default=""),
    Column("target_id", String(128), nullable=False, server_default=""),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Where the request came from (the gateway's view of the client), "" when unknown.
    Column("client_ip", String(64), nullable=False, server_default=""),
    # The service that wrote the event: "history" (its own events and RecordAuditEvent), the `act`
    # claim of an AppendAuditEvents caller ("auth", "training"), "retention" for the purge job.
    Column("source", String(32), nullable=False, server_default="history"),
    Index("ix_audit_events_org_created", "organization_id", text("created_at DESC"), text("id DESC")),
    Index("ix_audit_events_created", text("created_at DESC"), text("id DESC")),
    Index("ix_audit_events_org_action", "organization_id", "action", postgresql_ops={"action": "text_pattern_ops"}),
    Index("ix_audit_events_org_user_created", "organization_id", "user_id", text("created_at DESC")),
    Index("ix_audit_events_org_target", "organization_id", "target_id"),
)

# The audit log is append-only (migration 0002): a trigger refuses UPDATE and TRUNCATE always and
# DELETE unless the session's current_user is AUDIT_RETENTION_ROLE, which may DELETE (and SELECT)
# history.audit_events and nothing else. HISTORY_APP_ROLE is the runtime role of the service:
# SELECT/INSERT on the audit log, read/write on the other tables, owner of nothing.
AUDIT_RETENTION_ROLE = "hemovision_audit_retention"
HISTORY_APP_ROLE = "hemovision_history_app"

# Per-organization retention; an organization without a row follows the platform's settings
# (HV_HISTORY_RETENTION_DAYS for blobs, records kept).
retention_policies = Table(
    "retention_policies",
    metadata,
    Column("organization_id", String(64), primary_key=True),
    # Stored images/heatmaps older than this many days are deleted; NULL = the platform default,
    # 0 = keep them forever.
    Column("blob_days", Integer),
    # Whole prediction records (and batches) older than this many days are deleted; NULL = keep.
    Column("record_days", Integer),
    Column("updated_by", String(64), nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("blob_days IS NULL OR blob_days >= 0", name="ck_retention_blob_days"),
    CheckConstraint("record_days IS NULL OR record_days >= 1", name="ck_retention_record_days"),
)
