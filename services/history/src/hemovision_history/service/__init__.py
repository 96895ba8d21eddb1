"""Domain logic of the history service, one class per responsibility; knows nothing of gRPC and
raises errors.py exceptions. HistoryService wires them to one engine and blob store."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from hemovision_history.blobstore import BlobStore
from hemovision_history.domain import StoragePolicy
from hemovision_history.repository import AuditRepository, BatchRepository, PredictionRepository
from hemovision_history.service.audit import AuditService
from hemovision_history.service.batches import BatchService
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

    @classmethod
    def create(cls, engine: Engine, blobs: BlobStore, policy: StoragePolicy) -> HistoryService:
        prediction_rows, batch_rows, audit_log = (
            PredictionRepository(engine), BatchRepository(engine), AuditRepository(engine))
        predictions = PredictionService(prediction_rows, batch_rows, blobs, policy)
        return cls(
            predictions=predictions,
            batches=BatchService(batch_rows),
            review=ReviewService(predictions, prediction_rows, audit_log, blobs),
            audit=AuditService(audit_log),
            retention=RetentionService(prediction_rows, blobs, policy),
            engine=engine,
        )


__all__ = ["HistoryService"]
