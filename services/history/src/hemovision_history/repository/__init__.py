"""SQL of the history service, one repository per kind of record: predictions (with their
review, export, retention and statistics queries), batches and their items, the audit log, retention policies and the purge.
Every query that touches an organization's rows filters by `organization_id` in these modules."""

from hemovision_history.repository.audit import AuditRepository
from hemovision_history.repository.batches import BatchRepository
from hemovision_history.repository.predictions import PredictionRepository
from hemovision_history.repository.retention import RetentionRepository

__all__ = ["AuditRepository", "BatchRepository", "PredictionRepository", "RetentionRepository"]
