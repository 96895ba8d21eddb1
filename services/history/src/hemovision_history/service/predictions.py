"""Prediction records: record (one or a group, with their blobs), read, list, delete, the stored
image and heatmap, and the statistics over them. Blocking work (SQL, blob I/O) runs in worker
threads so the event loop keeps serving."""

from __future__ import annotations

import asyncio
import logging
import uuid

from hemovision_contracts import ORG_ADMIN
from hemovision_database import is_connection_error
from hemovision_grpc_server import ServiceError

from hemovision_history import domain
from hemovision_history.blobstore import BlobMissing, BlobStore, blob_key, delete_blobs
from hemovision_history.errors import (
    BatchNotFound, BlobNotFound, DatabaseUnavailable, InvalidRequest, PredictionNotFound, RoleRequired,
)
from hemovision_history.pagination import page_limit
from hemovision_history.repository import BatchRepository, PredictionRepository
from hemovision_history.service.validation import (
    ValidRecord,
    check,
    is_uuid,
    organization_of,
    validate_filter,
    validated_record,
)

log = logging.getLogger(__name__)

MAX_RECORD_ITEMS = 64


class PredictionService:
    def __init__(self, repository: PredictionRepository, batches: BatchRepository, blobs: BlobStore,
                 policy: domain.StoragePolicy) -> None:
        self.repo = repository
        self.batches = batches
        self.blobs = blobs
        self.policy = policy

    async def record(
        self,
        caller: domain.Caller,
        *,
        idempotency_key: str,
        prediction: domain.NewPrediction,
        image_png: bytes,
        heatmap_png: bytes,
    ) -> domain.Prediction:
        org = organization_of(caller)
        item = validated_record(idempotency_key, prediction, image_png, heatmap_png)
        # One worker-thread hop for the whole write (batch check, blobs, row): on the upload's
        # critical path each hop costs more than the work. A replayed idempotency key is caught by
        # the insert's unique constraint; the blobs written for it are then deleted.
        (outcome,) = await asyncio.to_thread(self._record_many_sync, org, caller.user_id, [item])
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    async def record_many(self, caller: domain.Caller, items: list[dict]) -> list[domain.Prediction | ServiceError]:
        """Several record() calls of one caller in one thread hop and, on the fast path, one
        INSERT. `items`: record()'s keyword arguments. Each item gets its stored record or the
        error record() would have raised for it."""
        org = organization_of(caller)
        if not 1 <= len(items) <= MAX_RECORD_ITEMS:
            raise InvalidRequest(f"between 1 and {MAX_RECORD_ITEMS} items per call, got {len(items)}")
        outcomes: list[domain.Prediction | ServiceError | None] = [None] * len(items)
        valid: list[tuple[int, ValidRecord]] = []
        for i, item in enumerate(items):
            try:
                valid.append((i, validated_record(**item)))
            except ServiceError as exc:
                outcomes[i] = exc
        if valid:
            stored = await asyncio.to_thread(self._record_many_sync, org, caller.user_id, [r for _, r in valid])
            for (i, _), outcome in zip(valid, stored, strict=True):
                outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def _record_many_sync(self, org: str, user_id: str, items: list[ValidRecord]) -> list[domain.Prediction | ServiceError]:
        """Blobs (one flush for all), then every row in one INSERT. A missing batch fails its item;
        a failed shared write is retried item by item, so one bad row cannot sink the others."""
        batch_ids = {r.new.batch_id for r in items if r.new.batch_id is not None}
        missing = {b for b in batch_ids if not self.batches.batch_exists(organization_id=org, batch_id=b)}
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
        except BaseException as exc:
            outage = isinstance(exc, Exception) and is_connection_error(exc)
            # A connection lost during the transaction may have lost only the COMMIT's answer: the
            # rows may be stored and point at these blobs, so they stay (at worst orphans of an
            # outage) and a retry with the same idempotency key returns that record.
            if not outage:
                delete_blobs(self.blobs, written)
            if outage:  # item by item would fail alike (and write blobs again): the caller retries
                if len(items) == 1:
                    raise DatabaseUnavailable() from exc
                log.warning("grouped prediction insert: the database is unavailable", exc_info=True)
                return [DatabaseUnavailable() for _ in items]
            if len(items) == 1:
                raise
            log.warning("grouped prediction insert failed; recording the items one by one", exc_info=True)
            return [self._record_one_or_error(org, user_id, r) for r in items]
        for (n, row), (prediction, created) in zip(rows, stored, strict=True):
            outcomes[n] = prediction
            if not created:  # a replay, or lost an idempotency race: the first record stands, our blobs go
                delete_blobs(self.blobs, [row["image_key"], row["heatmap_key"]])
        return outcomes  # type: ignore[return-value]

    def _record_one_or_error(self, org: str, user_id: str, item: ValidRecord) -> domain.Prediction | ServiceError:
        try:
            return self._record_many_sync(org, user_id, [item])[0]
        except ServiceError as exc:
            return exc
        except Exception:  # noqa: BLE001 - reported for this item alone, like an INTERNAL answer
            log.exception("recording a prediction failed")
            return ServiceError("could not store this prediction")

    async def get(self, caller: domain.Caller, prediction_id: str) -> domain.Prediction:
        """The caller's organization's prediction; any other id, malformed ones included, is NOT_FOUND."""
        org = organization_of(caller)
        if not is_uuid(prediction_id):
            raise PredictionNotFound(prediction_id)
        found = await asyncio.to_thread(self.repo.get_prediction, organization_id=org, prediction_id=prediction_id)
        if found is None:
            raise PredictionNotFound(prediction_id)
        return found

    async def page(
        self,
        caller: domain.Caller,
        *,
        filter: domain.PredictionFilter,  # noqa: A002
        limit: int,
        cursor: str,
        review_queue: bool,
    ) -> domain.Page[domain.Prediction]:
        org = organization_of(caller)
        return await asyncio.to_thread(
            self.repo.list_predictions,
            organization_id=org,
            filter=validate_filter(filter),
            limit=page_limit(limit),
            cursor=cursor,
            review_queue=review_queue,
        )

    async def delete(self, caller: domain.Caller, prediction_id: str) -> None:
        """The uploader or an org_admin deletes a prediction, its stored image and heatmap."""
        found = await self.get(caller, prediction_id)
        if found.user_id != caller.user_id and caller.role != ORG_ADMIN:
            raise RoleRequired((f"{ORG_ADMIN} (or the uploader)",))
        deleted = await asyncio.to_thread(
            self.repo.delete_prediction,
            organization_id=found.organization_id,
            prediction_id=prediction_id,
            actor_id=caller.user_id,
            client_ip=caller.client_ip,
        )
        if deleted is None:
            raise PredictionNotFound(prediction_id)
        await asyncio.to_thread(delete_blobs, self.blobs, [deleted.image_key, deleted.heatmap_key])

    async def blob(self, caller: domain.Caller, prediction_id: str, kind: str) -> bytes:
        """The stored model-input image or heatmap (`kind` "image" or "heatmap") as PNG bytes."""
        check(kind in ("image", "heatmap"), "kind must be BLOB_KIND_IMAGE or BLOB_KIND_HEATMAP")
        found = await self.get(caller, prediction_id)
        key = found.image_key if kind == "image" else found.heatmap_key
        if not key:
            raise BlobNotFound(prediction_id, kind)
        try:
            return await asyncio.to_thread(self.blobs.get, key)
        except BlobMissing as exc:
            raise BlobNotFound(prediction_id, kind) from exc

    async def statistics(self, caller: domain.Caller, filter: domain.PredictionFilter) -> domain.Statistics:  # noqa: A002
        org = organization_of(caller)
        return await asyncio.to_thread(self.repo.statistics, organization_id=org, filter=validate_filter(filter))
