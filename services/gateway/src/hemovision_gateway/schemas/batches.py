"""Batches and their items."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hemovision.history.v1 import history_pb2
from hemovision_contracts import CLASS_NAMES

from hemovision_gateway.schemas.common import ResponseModel, timestamp
from hemovision_gateway.schemas.predictions import Prediction

BatchStatus = Literal["queued", "running", "completed", "failed", "unknown"]
BATCH_STATUS: dict[int, BatchStatus] = {
    history_pb2.BATCH_STATUS_QUEUED: "queued",
    history_pb2.BATCH_STATUS_RUNNING: "running",
    history_pb2.BATCH_STATUS_COMPLETED: "completed",
    history_pb2.BATCH_STATUS_FAILED: "failed",
}
ItemStatus = Literal["succeeded", "failed", "pending"]
ITEM_STATUS: dict[int, ItemStatus] = {
    history_pb2.BATCH_ITEM_STATUS_SUCCEEDED: "succeeded",
    history_pb2.BATCH_ITEM_STATUS_FAILED: "failed",
}


class BatchLinks(ResponseModel):
    self: str = Field(examples=["/api/v1/batches/5d7c0a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6"])
    events: str = Field(description="server-sent events: progress, done")
    report: str

    @classmethod
    def for_batch(cls, batch_id: str) -> BatchLinks:
        base = f"/api/v1/batches/{batch_id}"
        return cls(self=base, events=f"{base}/events", report=f"{base}/report.pdf")


class BatchAccepted(ResponseModel):
    """A batch just queued: items refused at the upload are already counted in `failed`."""

    id: str
    status: Literal["queued"]
    total: int = Field(examples=[24])
    failed: int = Field(examples=[1])
    links: BatchLinks

    @classmethod
    def create(cls, batch_id: str, *, total: int, failed: int) -> BatchAccepted:
        return cls(id=batch_id, status="queued", total=total, failed=failed, links=BatchLinks.for_batch(batch_id))


class Batch(ResponseModel):
    """A batch's progress and its white-cell differential."""

    id: str
    status: BatchStatus
    total: int
    succeeded: int
    failed: int
    done: int = Field(description="succeeded + failed")
    progress: float = Field(description="done / total, 0-1 (1.0 for an empty batch)")
    sample_id: str
    slide_id: str
    note: str
    created_at: str | None
    completed_at: str | None
    label_counts: dict[str, int] = Field(description="every class of the platform's label set")
    differential_percent: dict[str, float] = Field(description="percent of the classified cells, per class")
    needs_review: int = Field(description="items flagged for review")
    links: BatchLinks

    @classmethod
    def from_pb(cls, b: history_pb2.Batch) -> Batch:
        return cls(**_batch_fields(b))


class BatchItem(ResponseModel):
    index: int = Field(description="0-based position in the upload")
    filename: str
    status: ItemStatus
    prediction_id: str | None
    error: str | None = Field(description="why the item failed")
    prediction: Prediction | None

    @classmethod
    def from_pb(cls, i: history_pb2.BatchItem) -> BatchItem:
        return cls(index=i.index, filename=i.filename, status=ITEM_STATUS.get(i.status, "pending"),
                   prediction_id=i.prediction_id or None, error=i.error or None,
                   prediction=Prediction.from_pb(i.prediction) if i.HasField("prediction") and i.prediction.id
                   else None)


class BatchDetail(Batch):
    """A batch with its per-item table (GET /batches/{id}; without it when include_items=false)."""

    items: list[BatchItem] = Field(description="at most 5000")

    @classmethod
    def from_pb(cls, b: history_pb2.Batch, *, items: list[BatchItem] | None = None) -> BatchDetail:
        return cls(**_batch_fields(b), items=items or [])


class BatchPage(ResponseModel):
    items: list[Batch]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


def _batch_fields(b: history_pb2.Batch) -> dict:
    done = b.succeeded + b.failed
    classified = sum(b.label_counts.values())
    return {
        "id": b.id,
        "status": BATCH_STATUS.get(b.status, "unknown"),
        "total": b.total,
        "succeeded": b.succeeded,
        "failed": b.failed,
        "done": done,
        "progress": round(done / b.total, 4) if b.total else 1.0,
        "sample_id": b.sample_id,
        "slide_id": b.slide_id,
        "note": b.note,
        "created_at": timestamp(b.created_at),
        "completed_at": timestamp(b.completed_at),
        "label_counts": {name: b.label_counts.get(name, 0) for name in CLASS_NAMES},
        "differential_percent": {
            name: round(100.0 * b.label_counts.get(name, 0) / classified, 2) if classified else 0.0
            for name in CLASS_NAMES},
        "needs_review": b.needs_review,
        "links": BatchLinks.for_batch(b.id),
    }
