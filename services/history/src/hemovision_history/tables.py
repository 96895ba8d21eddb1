"""Tables of schema `history` (SQLAlchemy Core). The Alembic migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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
    Index("ix_audit_events_org_created", "organization_id", text("created_at DESC"), text("id DESC")),
    Index("ix_audit_events_created", text("created_at DESC"), text("id DESC")),
    Index("ix_audit_events_org_action", "organization_id", "action", postgresql_ops={"action": "text_pattern_ops"}),
)
