"""Review and the reviewed data set: a reviewer's label next to the model's, and the reviewed
cells exported as a training data set (ImageFolder ZIP + splits.csv)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import logging
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from hemovision_history import domain
from hemovision_history.blobstore import BlobMissing, BlobStore
from hemovision_history.errors import PredictionNotFound
from hemovision_history.repository import AuditRepository, PredictionRepository
from hemovision_history.service.predictions import PredictionService
from hemovision_history.service.validation import check, clean_text, finite, organization_of

log = logging.getLogger(__name__)

EXPORT_CHUNK_BYTES = 64 * 1024
EXPORT_PAGE_ROWS = 200


def split_of(prediction_id: str, val_fraction: float) -> str:
    """Deterministic train/val assignment: the same cell lands in the same split on every export."""
    bucket = int.from_bytes(hashlib.sha256(prediction_id.encode()).digest()[:8], "big") / 2**64
    return "val" if bucket < val_fraction else "train"


class _ChunkSink(io.RawIOBase):
    """A write-only, non-seekable file for zipfile; the writer drains it in chunks."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class ReviewService:
    def __init__(self, predictions: PredictionService, repository: PredictionRepository, audit: AuditRepository,
                 blobs: BlobStore) -> None:
        self.predictions = predictions
        self.repo = repository
        self.audit = audit
        self.blobs = blobs

    async def record(self, caller: domain.Caller, prediction_id: str, *, label: str, comment: str) -> domain.Prediction:
        """Stores the reviewer's label beside the model's (never over it) and audits it."""
        comment = clean_text(comment, "comment", 2000)
        found = await self.predictions.get(caller, prediction_id)
        # The classes the cell can be given are those of the model that classified it: its
        # metadata's class names, which are the keys of the stored probabilities.
        classes = sorted(found.probabilities)
        check(label in found.probabilities, f"label must be one of {', '.join(classes)}; got {label!r}")
        reviewed = await asyncio.to_thread(
            self.repo.review_prediction,
            organization_id=found.organization_id,
            prediction_id=prediction_id,
            reviewer_id=caller.user_id,
            client_ip=caller.client_ip,
            label=label,
            comment=comment,
        )
        if reviewed is None:  # deleted in between
            raise PredictionNotFound(prediction_id)
        return reviewed

    async def export_dataset(
        self,
        caller: domain.Caller,
        *,
        created_start: datetime | None,
        created_end: datetime | None,
        val_fraction: float,
    ) -> AsyncIterator[bytes]:
        """A ZIP in ImageFolder layout (<reviewed_label>/<prediction id>.png) plus splits.csv
        (path,label,split,model,version: the model version that classified the cell, whose
        preprocessing produced the stored model image), produced and yielded in chunks: memory
        stays bounded by one image plus one chunk, whatever the data set size."""
        org = organization_of(caller)
        if val_fraction == 0:
            val_fraction = 0.1
        check(finite(val_fraction) and 0.0 <= val_fraction < 1.0, "val_fraction must be in [0, 1)")
        await asyncio.to_thread(
            self.audit.record_audit_event,
            organization_id=org,
            user_id=caller.user_id,
            action="dataset.export",
            target_type="dataset",
            target_id="",
            details={"val_fraction": val_fraction},
            client_ip=caller.client_ip,
        )
        sink = _ChunkSink()
        rows: list[tuple[str, str, str, str, int]] = []
        with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
            after_id: str | None = None
            while True:
                page = await asyncio.to_thread(
                    self.repo.reviewed_for_export,
                    organization_id=org,
                    created_start=created_start,
                    created_end=created_end,
                    after_id=after_id,
                    limit=EXPORT_PAGE_ROWS,
                )
                if not page:
                    break
                for prediction_id, label, key, model_name, model_version in page:
                    try:
                        data = await asyncio.to_thread(self.blobs.get, key)
                    except BlobMissing:
                        log.warning("export: blob %s missing, skipped", key)
                        continue
                    path = f"{label}/{prediction_id}.png"
                    archive.writestr(path, data)  # PNG is compressed already: stored as is
                    rows.append((path, label, split_of(prediction_id, val_fraction), model_name, model_version))
                    while len(sink.buffer) >= EXPORT_CHUNK_BYTES:
                        yield bytes(sink.buffer[:EXPORT_CHUNK_BYTES])
                        del sink.buffer[:EXPORT_CHUNK_BYTES]
                after_id = page[-1][0]
            table = io.StringIO()
            writer = csv.writer(table, lineterminator="\n")
            writer.writerow(["path", "label", "split", "model", "version"])
            writer.writerows(rows)
            archive.writestr(
                zipfile.ZipInfo("splits.csv", date_time=datetime.now(UTC).timetuple()[:6]),
                table.getvalue(),
                compress_type=zipfile.ZIP_DEFLATED,
            )
        data = sink.take()
        for start in range(0, len(data), EXPORT_CHUNK_BYTES):
            yield data[start : start + EXPORT_CHUNK_BYTES]
