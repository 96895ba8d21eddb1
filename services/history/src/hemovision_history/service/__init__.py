"""Domain logic of the history service, one class per responsibility; knows nothing of gRPC and
raises errors.py exceptions. HistoryService wires them to one engine and blob store."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from hemovision_history.blobstore import BlobStore
from hemovision_history.domain import StoragePolicy
from hemovision_history.repository.drift import DriftRepository
from hemovision_history.repository import AuditRepository, BatchRepository, PredictionRepository, RetentionRepository
from hemovision_history.service.audit import AuditService
from hemovision_history.service.batches import BatchService
from hemovision_history.service.drift import DriftService, ReferenceSource
from hemovision_history.service.predictions import PredictionService
from hemovision_history.service.retention import RetentionService
from hemovision_history.service.review import ReviewService


@dataclass(frozen=True)
class HistoryService:
    """What the servicer (and `purge`) call; `engine` is disposed by whoever built it."""

    predictions: PredictionService
    batches: BatchService
    review: ReviewService
    audit: AuditService
    retention: RetentionService
    engine: Engine
    # None in processes that need no references (`purge`)
    drift: DriftService | None = None

    @classmethod
    def create(
        cls, engine: Engine, blobs: BlobStore, policy: StoragePolicy, *,
        audit_append_services: frozenset[str] = frozenset(), audit_retention_engine: Engine | None = None,
        drift_references: ReferenceSource | None = None,
    ) -> HistoryService:
        """`audit_retention_engine`: the connection audit events are purged through (the `purge`
        command's; the server never purges)."""
        prediction_rows, batch_rows, audit_log = (
            PredictionRepository(engine), BatchRepository(engine), AuditRepository(engine))
        predictions = PredictionService(prediction_rows, batch_rows, blobs, policy)
        return cls(
            predictions=predictions,
            batches=BatchService(batch_rows),
            review=ReviewService(predictions, prediction_rows, audit_log, blobs),
            audit=AuditService(audit_log, append_services=audit_append_services),
            retention=RetentionService(RetentionRepository(engine), audit_log, blobs, policy,
                                       audit_engine=audit_retention_engine),
            engine=engine,
            drift=DriftService(DriftRepository(engine), drift_references) if drift_references is not None else None,
        )


__all__ = ["HistoryService"]
