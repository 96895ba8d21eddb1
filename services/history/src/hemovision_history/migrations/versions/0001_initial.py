"""initial schema: predictions, batches, batch_items, audit_events

Revision ID: 0001
Revises:
Create Date: 2026-11-22 13:27:26.767756
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('organization_id', sa.String(length=64), server_default='', nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=128), nullable=False),
    sa.Column('target_type', sa.String(length=64), server_default='', nullable=False),
    sa.Column('target_id', sa.String(length=128), server_default='', nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='history'
    )
    op.create_index('ix_audit_events_created', 'audit_events', [sa.literal_column('created_at DESC'), sa.literal_column('id DESC')], unique=False, schema='history')
    op.create_index('ix_audit_events_org_action', 'audit_events', ['organization_id', 'action'], unique=False, schema='history', postgresql_ops={'action': 'text_pattern_ops'})
    op.create_index('ix_audit_events_org_created', 'audit_events', ['organization_id', sa.literal_column('created_at DESC'), sa.literal_column('id DESC')], unique=False, schema='history')
    op.create_table('batches',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.String(length=128), server_default='', nullable=False),
    sa.Column('slide_id', sa.String(length=128), server_default='', nullable=False),
    sa.Column('note', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organization_id', 'idempotency_key', name='uq_batches_org_idempotency_key'),
    schema='history'
    )
    op.create_index('ix_batches_org_created', 'batches', ['organization_id', sa.literal_column('created_at DESC'), sa.literal_column('id DESC')], unique=False, schema='history')
    op.create_table('predictions',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('label', sa.String(length=32), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('probabilities', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('needs_review', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('review_reasons', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.BigInteger(), nullable=False),
    sa.Column('temperature', sa.Float(), server_default=sa.text('1.0'), nullable=False),
    sa.Column('ood_score', sa.Float(), server_default=sa.text('0'), nullable=False),
    sa.Column('timings_ms', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('image_sha256', sa.String(length=64), server_default='', nullable=False),
    sa.Column('filename', sa.String(length=255), server_default='', nullable=False),
    sa.Column('sample_id', sa.String(length=128), server_default='', nullable=False),
    sa.Column('slide_id', sa.String(length=128), server_default='', nullable=False),
    sa.Column('note', sa.Text(), server_default='', nullable=False),
    sa.Column('batch_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('image_key', sa.Text(), nullable=True),
    sa.Column('heatmap_key', sa.Text(), nullable=True),
    sa.Column('reviewed_label', sa.String(length=32), nullable=True),
    sa.Column('reviewed_by', sa.String(length=64), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review_comment', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['history.batches.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organization_id', 'idempotency_key', name='uq_predictions_org_idempotency_key'),
    schema='history'
    )
    op.create_index('ix_predictions_batch', 'predictions', ['batch_id'], unique=False, schema='history')
    op.create_index('ix_predictions_blobs_created', 'predictions', ['created_at'], unique=False, schema='history', postgresql_where=sa.text('image_key IS NOT NULL OR heatmap_key IS NOT NULL'))
    op.create_index('ix_predictions_org_created', 'predictions', ['organization_id', sa.literal_column('created_at DESC'), sa.literal_column('id DESC')], unique=False, schema='history')
    op.create_index('ix_predictions_org_label_created', 'predictions', ['organization_id', 'label', sa.literal_column('created_at DESC'), sa.literal_column('id DESC')], unique=False, schema='history')
    op.create_index('ix_predictions_org_model_version', 'predictions', ['organization_id', 'model_version'], unique=False, schema='history')
    op.create_index('ix_predictions_org_review_queue', 'predictions', ['organization_id', sa.literal_column('needs_review DESC'), 'confidence', 'created_at', 'id'], unique=False, schema='history', postgresql_where=sa.text('reviewed_label IS NULL'))
    op.create_index('ix_predictions_org_reviewed', 'predictions', ['organization_id', 'reviewed_label'], unique=False, schema='history', postgresql_where=sa.text('reviewed_label IS NOT NULL'))
    op.create_index('ix_predictions_org_sample', 'predictions', ['organization_id', 'sample_id'], unique=False, schema='history')
    op.create_table('batch_items',
    sa.Column('batch_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), server_default='', nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('prediction_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('error', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['history.batches.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prediction_id'], ['history.predictions.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('batch_id', 'index', name='pk_batch_items'),
    schema='history'
    )


def downgrade() -> None:
    op.drop_table('batch_items', schema='history')
    op.drop_index('ix_predictions_org_sample', table_name='predictions', schema='history')
    op.drop_index('ix_predictions_org_reviewed', table_name='predictions', schema='history', postgresql_where=sa.text('reviewed_label IS NOT NULL'))
    op.drop_index('ix_predictions_org_review_queue', table_name='predictions', schema='history', postgresql_where=sa.text('reviewed_label IS NULL'))
    op.drop_index('ix_predictions_org_model_version', table_name='predictions', schema='history')
    op.drop_index('ix_predictions_org_label_created', table_name='predictions', schema='history')
    op.drop_index('ix_predictions_org_created', table_name='predictions', schema='history')
    op.drop_index('ix_predictions_blobs_created', table_name='predictions', schema='history', postgresql_where=sa.text('image_key IS NOT NULL OR heatmap_key IS NOT NULL'))
    op.drop_index('ix_predictions_batch', table_name='predictions', schema='history')
    op.drop_table('predictions', schema='history')
    op.drop_index('ix_batches_org_created', table_name='batches', schema='history')
    op.drop_table('batches', schema='history')
    op.drop_index('ix_audit_events_org_created', table_name='audit_events', schema='history')
    op.drop_index('ix_audit_events_org_action', table_name='audit_events', schema='history', postgresql_ops={'action': 'text_pattern_ops'})
    op.drop_index('ix_audit_events_created', table_name='audit_events', schema='history')
    op.drop_table('audit_events', schema='history')
