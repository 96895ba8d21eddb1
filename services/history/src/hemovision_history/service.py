"""Domain logic of the history service: validation, scoping, blob handling, retention.
Knows nothing of gRPC; raises errors.py exceptions. Blocking work (SQL, blob I/O) runs
in worker threads so the event loop keeps serving."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import math
import re
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hemovision_grpc_server import ServiceError

from hemovision_history import CLASS_NAMES, domain
from hemovision_history.blobstore import BlobMissing, BlobStore, blob_key
from hemovision_history.errors import (
    BatchNotFound,
    BlobNotFound,
    InvalidRequest,
    NoOrganization,
    PredictionNotFound,
    RoleRequired,
)
from hemovision_history.pagination import page_limit
from hemovision_history.repository import HistoryRepository

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BLOB_BYTES = 8 * 1024 * 1024
MAX_RECORD_ITEMS = 64
PROBABILITY_SUM_TOLERANCE = 1e-2
CONFIDENCE_TOLERANCE = 1e-3
EXPORT_CHUNK_BYTES = 64 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidRequest(message)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def _text(value: str, field: str, max_len: int) -> str:
    value = value.strip()
    _check(len(value) <= max_len, f"{field} is longer than {max_len} characters")
    _check("\x00" not in value, f"{field} contains a NUL character")
    return value


def validate_new_prediction(p: domain.NewPrediction) -> domain.NewPrediction:
    """Raises InvalidRequest with a message naming the field; returns the normalised record."""
    _check(p.label in CLASS_NAMES, f"label must be one of {', '.join(CLASS_NAMES)}; got {p.label!r}")
    missing = [c for c in CLASS_NAMES if c not in p.probabilities]
    unknown = sorted(set(p.probabilities) - set(CLASS_NAMES))
    _check(not missing, f"probabilities is missing {', '.join(missing)}")
    _check(not unknown, f"probabilities has unknown classes: {', '.join(unknown)}")
    for name, value in p.probabilities.items():
        _check(_finite(value) and 0.0 <= value <= 1.0, f"probabilities[{name}] must be in [0, 1]")
    total = sum(p.probabilities.values())
    _check(abs(total - 1.0) <= PROBABILITY_SUM_TOLERANCE, f"probabilities must sum to 1 (got {total:.4f})")
    _check(_finite(p.confidence) and 0.0 <= p.confidence <= 1.0, "confidence must be in [0, 1]")
    _check(
        abs(p.confidence - p.probabilities[p.label]) <= CONFIDENCE_TOLERANCE,
        "confidence must equal the probability of label",
    )
    _check(len(p.review_reasons) <= 16, "review_reasons has more than 16 entries")
    for reason in p.review_reasons:
        _check(0 < len(reason) <= 64, "each review reason must be 1..64 characters")
    _check(bool(p.model_name.strip()), "model.name is required")
    _check(len(p.model_name) <= 128, "model.name is longer than 128 characters")
    _check(p.model_version >= 0, "model.version must not be negative")
    _check(_finite(p.temperature) and p.temperature >= 0.0, "temperature must be a non-negative number")
    _check(_finite(p.ood_score), "ood_score must be a finite number")
    _check(len(p.timings_ms) <= 32, "timings_ms has more than 32 entries")
    for name, value in p.timings_ms.items():
        _check(0 < len(name) <= 64, "timings_ms keys must be 1..64 characters")
        _check(_finite(value) and value >= 0.0, f"timings_ms[{name}] must be a non-negative number")
    sha = p.image_sha256.strip().lower()
    _check(sha == "" or bool(_SHA256.match(sha)), "image_sha256 must be 64 hexadecimal characters")
    # The file name is informational: keep the last path component only.
    filename = _text(p.filename.replace("\\", "/").rsplit("/", 1)[-1], "filename", 255)
    batch_id = (p.batch_id or "").strip() or None
    _check(batch_id is None or _is_uuid(batch_id), "batch_id must be a UUID")
    return domain.NewPrediction(
        label=p.label,
        confidence=float(p.confidence),
        probabilities={c: float(p.probabilities[c]) for c in CLASS_NAMES},
        needs_review=bool(p.needs_review),
        review_reasons=list(p.review_reasons),
        model_name=p.model_name.strip(),
        model_version=int(p.model_version),
        temperature=float(p.temperature),
        ood_score=float(p.ood_score),
        timings_ms={k: float(v) for k, v in p.timings_ms.items()},
        image_sha256=sha,
        filename=filename,
        sample_id=_text(p.sample_id, "sample_id", 128),
        slide_id=_text(p.slide_id, "slide_id", 128),
        note=_text(p.note, "note", 2000),
        batch_id=batch_id,
    )


def _check_png(data: bytes, field: str) -> None:
    _check(len(data) <= MAX_BLOB_BYTES, f"{field} is larger than {MAX_BLOB_BYTES // (1024 * 1024)} MiB")
    _check(data.startswith(PNG_SIGNATURE), f"{field} must be a PNG image")


def _idempotency_key(key: str) -> str | None:
    key = key.strip()
    _check(len(key) <= 200, "idempotency_key is longer than 200 characters")
    return key or None


@dataclass(frozen=True)
class _Record:
    """One validated RecordPrediction request."""

    key: str | None
    new: domain.NewPrediction
    image_png: bytes
    heatmap_png: bytes


def _validated_record(idempotency_key: str, prediction: domain.NewPrediction, image_png: bytes,
                      heatmap_png: bytes) -> _Record:
    key = _idempotency_key(idempotency_key)
    new = validate_new_prediction(prediction)
    for field_name, data in (("image_png", image_png), ("heatmap_png", heatmap_png)):
        if data:
            _check_png(data, field_name)
    return _Record(key, new, image_png, heatmap_png)


def validate_filter(f: domain.PredictionFilter) -> domain.PredictionFilter:
    _check(f.label == "" or f.label in CLASS_NAMES, f"filter.label must be one of {', '.join(CLASS_NAMES)}")
    _check(f.model_version >= 0, "filter.model_version must not be negative")
    _check(f.batch_id == "" or _is_uuid(f.batch_id), "filter.batch_id must be a UUID")
    if f.created_start and f.created_end:
        _check(f.created_start <= f.created_end, "filter.created.start must not be after created.end")
    return f


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


@dataclass(frozen=True)
class StoragePolicy:
    store_images: bool = True
    retention_days: int = 0


class HistoryService:
    def __init__(self, repository: HistoryRepository, blobs: BlobStore, policy: StoragePolicy) -> None:
        self.repo = repository
        self.blobs = blobs
        self.policy = policy

    # ---- helpers -----------------------------------------------------------------

    @staticmethod
    def _org(caller: domain.Caller) -> str:
        if not caller.organization_id:
            raise NoOrganization()
        return caller.organization_id

    async def _get_owned(self, caller: domain.Caller, prediction_id: str) -> domain.Prediction:
        org = self._org(caller)
        if not _is_uuid(prediction_id):
            raise PredictionNotFound(prediction_id)
        found = await asyncio.to_thread(self.repo.get_prediction, organization_id=org, prediction_id=prediction_id)
        if found is None:
            raise PredictionNotFound(prediction_id)
        return found

    async def _delete_blobs(self, keys: list[str | None]) -> None:
        await asyncio.to_thread(self._delete_blobs_sync, keys)

    # ---- predictions ---------------------------------------------------------------

    async def record_prediction(
        self,
        caller: domain.Caller,
        *,
        idempotency_key: str,
        prediction: domain.NewPrediction,
        image_png: bytes,
        heatmap_png: bytes,
    ) -> domain.Prediction:
        org = self._org(caller)
        item = _validated_record(idempotency_key, prediction, image_png, heatmap_png)
        # One worker-thread hop for the whole write (batch check, blobs, row): on the upload's
        # critical path each hop costs more than the work. A replayed idempotency key is caught by
        # the insert's unique constraint; the blobs written for it are then deleted.
        (outcome,) = await asyncio.to_thread(self._record_many_sync, org, caller.user_id, [item])
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    async def record_predictions(self, caller: domain.Caller, items: list[dict]) -> list[domain.Prediction | ServiceError]:
        """Several record_prediction calls of one caller in one thread hop and, on the fast path,
        one INSERT. `items`: record_prediction's keyword arguments. Each item gets its stored
        record or the error record_prediction would have raised for it."""
        org = self._org(caller)
        if not 1 <= len(items) <= MAX_RECORD_ITEMS:
            raise InvalidRequest(f"between 1 and {MAX_RECORD_ITEMS} items per call, got {len(items)}")
        outcomes: list[domain.Prediction | ServiceError | None] = [None] * len(items)
        valid: list[tuple[int, _Record]] = []
        for i, item in enumerate(items):
            try:
                valid.append((i, _validated_record(**item)))
            except ServiceError as exc:
                outcomes[i] = exc
        if valid:
            stored = await asyncio.to_thread(self._record_many_sync, org, caller.user_id, [r for _, r in valid])
            for (i, _), outcome in zip(valid, stored, strict=True):
                outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def _record_many_sync(self, org: str, user_id: str, items: list[_Record]) -> list[domain.Prediction | ServiceError]:
        """Blobs (one flush for all), then every row in one INSERT. A missing batch fails its item;
        a failed shared write is retried item by item, so one bad row cannot sink the others."""
        batch_ids = {r.new.batch_id for r in items if r.new.batch_id is not None}
        missing = {b for b in batch_ids if not self.repo.batch_exists(organization_id=org, batch_id=b)}
        outcomes: list[domain.Prediction | ServiceError | None] = [None] * len(items)
        rows, blobs = [], []
        for n, r in enumerate(items):
            if r.new.batch_id in missing:
                outcomes[n] = BatchNotFound(r.new.batch_id)
                continue
            prediction_id = str(uuid.uuid4())
            keys = {kind: blob_key(org, prediction_id, kind) if self.policy.store_images and data else None
                    for kind, data in (("image", r.image_png), ("heatmap", r.heatmap_png))}
            blobs += [(keys[kind], data) for kind, data in (("image", r.image_png), ("heatmap", r.heatmap_png))
                      if keys[kind]]
            rows.append((n, dict(prediction_id=prediction_id, organization_id=org, user_id=user_id,
                                 idempotency_key=r.key, new=r.new, image_key=keys["image"],
                                 heatmap_key=keys["heatmap"])))
        written = [key for key, _ in blobs]
        try:
            if blobs:
                self.blobs.put_many(blobs, content_type="image/png")
            stored = self.repo.insert_predictions([row for _, row in rows]) if rows else []
        except BaseException:
            self._delete_blobs_sync(written)
            if len(items) == 1:
                raise
            log.warning("grouped prediction insert failed; recording the items one by one", exc_info=True)
            return [self._record_one_or_error(org, user_id, r) for r in items]
        for (n, row), (prediction, created) in zip(rows, stored, strict=True):
            outcomes[n] = prediction
            if not created:  # a replay, or lost an idempotency race: the first record stands, our blobs go
                self._delete_blobs_sync([row["image_key"], row["heatmap_key"]])
        return outcomes  # type: ignore[return-value]

    def _record_one_or_error(self, org: str, user_id: str, item: _Record) -> domain.Prediction | ServiceError:
        try:
            return self._record_many_sync(org, user_id, [item])[0]
        except ServiceError as exc:
            return exc
        except Exception:  # noqa: BLE001 - reported for this item alone, like an INTERNAL answer
            log.exception("recording a prediction failed")
            return ServiceError("could not store this prediction")

    def _delete_blobs_sync(self, keys: list[str | None]) -> None:
        for key in keys:
            if key:
                try:
                    self.blobs.delete(key)
                except Exception:  # noqa: BLE001 - the row is gone; an orphan blob is logged, not fatal
                    log.exception("could not delete blob %s", key)

    async def get_prediction(self, caller: domain.Caller, prediction_id: str) -> domain.Prediction:
        return await self._get_owned(caller, prediction_id)

    async def list_predictions(
        self,
        caller: domain.Caller,
        *,
        filter: domain.PredictionFilter,  # noqa: A002
        limit: int,
        cursor: str,
        review_queue: bool,
    ) -> domain.Page[domain.Prediction]:
        org = self._org(caller)
        return await asyncio.to_thread(
            self.repo.list_predictions,
            organization_id=org,
            filter=validate_filter(filter),
            limit=page_limit(limit),
            cursor=cursor,
            review_queue=review_queue,
        )

    async def delete_prediction(self, caller: domain.Caller, prediction_id: str) -> None:
        """The uploader or an org_admin deletes a prediction, its stored image and heatmap."""
        found = await self._get_owned(caller, prediction_id)
        if found.user_id != caller.user_id and caller.role != domain.ROLE_ORG_ADMIN:
            raise RoleRequired(("org_admin (or the uploader)",))
        deleted = await asyncio.to_thread(
            self.repo.delete_prediction,
            organization_id=found.organization_id,
            prediction_id=prediction_id,
            actor_id=caller.user_id,
        )
        if deleted is None:
            raise PredictionNotFound(prediction_id)
        await self._delete_blobs([deleted.image_key, deleted.heatmap_key])

    async def review_prediction(
        self, caller: domain.Caller, prediction_id: str, *, label: str, comment: str
    ) -> domain.Prediction:
        org = self._org(caller)
        _check(label in CLASS_NAMES, f"label must be one of {', '.join(CLASS_NAMES)}; got {label!r}")
        comment = _text(comment, "comment", 2000)
        if not _is_uuid(prediction_id):
            raise PredictionNotFound(prediction_id)
        reviewed = await asyncio.to_thread(
            self.repo.review_prediction,
            organization_id=org,
            prediction_id=prediction_id,
            reviewer_id=caller.user_id,
            label=label,
            comment=comment,
        )
        if reviewed is None:
            raise PredictionNotFound(prediction_id)
        return reviewed

    async def get_prediction_blob(self, caller: domain.Caller, prediction_id: str, kind: str) -> bytes:
        _check(kind in ("image", "heatmap"), "kind must be BLOB_KIND_IMAGE or BLOB_KIND_HEATMAP")
        found = await self._get_owned(caller, prediction_id)
        key = found.image_key if kind == "image" else found.heatmap_key
        if not key:
            raise BlobNotFound(prediction_id, kind)
        try:
            return await asyncio.to_thread(self.blobs.get, key)
        except BlobMissing as exc:
            raise BlobNotFound(prediction_id, kind) from exc

    # ---- batches ---------------------------------------------------------------------

    async def create_batch(
        self, caller: domain.Caller, *, idempotency_key: str, total: int, sample_id: str, slide_id: str, note: str
    ) -> domain.Batch:
        org = self._org(caller)
        _check(1 <= total <= 100_000, "total must be between 1 and 100000")
        return await asyncio.to_thread(
            self.repo.create_batch,
            organization_id=org,
            user_id=caller.user_id,
            idempotency_key=_idempotency_key(idempotency_key),
            total=total,
            sample_id=_text(sample_id, "sample_id", 128),
            slide_id=_text(slide_id, "slide_id", 128),
            note=_text(note, "note", 2000),
        )

    async def get_batch(self, caller: domain.Caller, batch_id: str) -> domain.Batch:
        org = self._org(caller)
        if not _is_uuid(batch_id):
            raise BatchNotFound(batch_id)
        found = await asyncio.to_thread(self.repo.get_batch, organization_id=org, batch_id=batch_id)
        if found is None:
            raise BatchNotFound(batch_id)
        return found

    async def list_batches(self, caller: domain.Caller, *, limit: int, cursor: str) -> domain.Page[domain.Batch]:
        org = self._org(caller)
        return await asyncio.to_thread(
            self.repo.list_batches, organization_id=org, limit=page_limit(limit), cursor=cursor
        )

    async def record_batch_item(
        self,
        caller: domain.Caller,
        *,
        batch_id: str,
        index: int,
        filename: str,
        status: str,
        prediction_id: str,
        error: str,
    ) -> domain.BatchItem:
        org = self._org(caller)
        if not _is_uuid(batch_id):
            raise BatchNotFound(batch_id)
        _check(index >= 0, "item.index must not be negative")
        _check(status in ("succeeded", "failed"), "item.status must be SUCCEEDED or FAILED")
        prediction_id = prediction_id.strip()
        if status == "succeeded":
            _check(bool(prediction_id), "a succeeded item needs prediction_id")
            if not _is_uuid(prediction_id):
                raise PredictionNotFound(prediction_id)
        else:
            _check(not prediction_id, "a failed item has no prediction_id")
            _check(bool(error.strip()), "a failed item needs an error message")
        batch = await self.get_batch(caller, batch_id)
        _check(index < batch.total, f"item.index must be below the batch total ({batch.total})")
        try:
            item = await asyncio.to_thread(
                self.repo.record_batch_item,
                organization_id=org,
                batch_id=batch_id,
                index=index,
                # Names inside an upload and error texts are informational: clipped, never refused
                # (a worker must always be able to record an item's outcome).
                filename=filename.replace("\x00", "").strip()[:255],
                status=status,
                prediction_id=prediction_id or None,
                error=error.replace("\x00", "").strip()[:2000],
            )
        except LookupError as exc:
            raise PredictionNotFound(prediction_id) from exc
        except ValueError as exc:
            raise InvalidRequest(f"prediction {prediction_id} belongs to another batch") from exc
        if item is None:
            raise BatchNotFound(batch_id)
        return item

    async def list_batch_items(
        self, caller: domain.Caller, batch_id: str, *, limit: int, cursor: str
    ) -> domain.Page[domain.BatchItem]:
        org = self._org(caller)
        if not _is_uuid(batch_id):
            raise BatchNotFound(batch_id)
        page = await asyncio.to_thread(
            self.repo.list_batch_items, organization_id=org, batch_id=batch_id, limit=page_limit(limit), cursor=cursor
        )
        if page is None:
            raise BatchNotFound(batch_id)
        return page

    # ---- statistics and audit -------------------------------------------------------

    async def statistics(self, caller: domain.Caller, filter: domain.PredictionFilter) -> domain.Statistics:  # noqa: A002
        org = self._org(caller)
        return await asyncio.to_thread(self.repo.statistics, organization_id=org, filter=validate_filter(filter))

    async def record_audit_event(
        self, caller: domain.Caller, *, action: str, target_type: str, target_id: str, details_json: str
    ) -> domain.AuditEvent:
        action = action.strip()
        _check(bool(re.match(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$", action)) and len(action) <= 128,
               "action must look like 'object.verb' (lower case, dots), e.g. 'model.activate'")
        details: dict = {}
        if details_json.strip():
            try:
                details = json.loads(details_json)
            except json.JSONDecodeError as exc:
                raise InvalidRequest("details_json must be a JSON object") from exc
            _check(isinstance(details, dict), "details_json must be a JSON object")
            _check(len(details_json) <= 16_384, "details_json is larger than 16 KiB")
        return await asyncio.to_thread(
            self.repo.record_audit_event,
            organization_id=caller.organization_id,
            user_id=caller.user_id,
            action=action,
            target_type=_text(target_type, "target_type", 64),
            target_id=_text(target_id, "target_id", 128),
            details=details,
        )

    async def list_audit_events(
        self, caller: domain.Caller, *, action_prefix: str, limit: int, cursor: str
    ) -> domain.Page[domain.AuditEvent]:
        """org_admin: its organization's events; platform_admin: every organization's;
        ml_engineer: the platform's own events (organization "", e.g. model.activate)."""
        if caller.role == domain.ROLE_PLATFORM_ADMIN:
            org: str | None = None
        elif caller.role == domain.ROLE_ORG_ADMIN:
            org = self._org(caller)
        elif caller.role == domain.ROLE_ML_ENGINEER:
            org = ""
        else:
            raise RoleRequired((domain.ROLE_ORG_ADMIN, domain.ROLE_PLATFORM_ADMIN))
        return await asyncio.to_thread(
            self.repo.list_audit_events,
            organization_id=org,
            action_prefix=_text(action_prefix, "action_prefix", 128),
            limit=page_limit(limit),
            cursor=cursor,
        )

    # ---- export ------------------------------------------------------------------------

    async def export_reviewed_dataset(
        self,
        caller: domain.Caller,
        *,
        created_start: datetime | None,
        created_end: datetime | None,
        val_fraction: float,
    ) -> AsyncIterator[bytes]:
        """A ZIP in ImageFolder layout (<reviewed_label>/<prediction id>.png) plus
        splits.csv (path,label,split,model,version: the model version that classified the cell,
        whose preprocessing produced the stored model image), produced and yielded in chunks: memory stays bounded
        by one image plus one chunk, whatever the data set size."""
        org = self._org(caller)
        if val_fraction == 0:
            val_fraction = 0.1
        _check(_finite(val_fraction) and 0.0 <= val_fraction < 1.0, "val_fraction must be in [0, 1)")
        await asyncio.to_thread(
            self.repo.record_audit_event,
            organization_id=org,
            user_id=caller.user_id,
            action="dataset.export",
            target_type="dataset",
            target_id="",
            details={"val_fraction": val_fraction},
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
                    limit=200,
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

    # ---- retention -----------------------------------------------------------------------

    async def purge_expired(self, *, now: datetime | None = None, batch_size: int = 500) -> int:
        """Deletes stored images and heatmaps older than the retention period (all
        organizations); the prediction records stay. Returns how many predictions lost
        their blobs. A no-op when retention_days is 0."""
        if self.policy.retention_days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.policy.retention_days)
        purged = 0
        while True:
            claimed = await asyncio.to_thread(self.repo.claim_expired_blobs, older_than=cutoff, limit=batch_size)
            for _id, image_key, heatmap_key in claimed:
                await self._delete_blobs([image_key, heatmap_key])
            purged += len(claimed)
            if len(claimed) < batch_size:
                return purged


__all__ = ["HistoryService", "StoragePolicy", "split_of", "validate_new_prediction"]
