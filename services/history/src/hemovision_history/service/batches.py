"""Batches: create, read, list, record an item's outcome, list the items."""

from __future__ import annotations

import asyncio

from hemovision_history import domain
from hemovision_history.errors import BatchNotFound, InvalidRequest, PredictionNotFound
from hemovision_history.pagination import page_limit
from hemovision_history.repository import BatchRepository
from hemovision_history.service.validation import (
    check,
    clean_idempotency_key,
    clean_text,
    is_uuid,
    organization_of,
)


class BatchService:
    def __init__(self, repository: BatchRepository) -> None:
        self.repo = repository

    async def create(
        self, caller: domain.Caller, *, idempotency_key: str, total: int, sample_id: str, slide_id: str, note: str
    ) -> domain.Batch:
        org = organization_of(caller)
        check(1 <= total <= 100_000, "total must be between 1 and 100000")
        return await asyncio.to_thread(
            self.repo.create_batch,
            organization_id=org,
            user_id=caller.user_id,
            idempotency_key=clean_idempotency_key(idempotency_key),
            total=total,
            sample_id=clean_text(sample_id, "sample_id", 128),
            slide_id=clean_text(slide_id, "slide_id", 128),
            note=clean_text(note, "note", 2000),
        )

    async def get(self, caller: domain.Caller, batch_id: str) -> domain.Batch:
        org = organization_of(caller)
        if not is_uuid(batch_id):
            raise BatchNotFound(batch_id)
        found = await asyncio.to_thread(self.repo.get_batch, organization_id=org, batch_id=batch_id)
        if found is None:
            raise BatchNotFound(batch_id)
        return found

    async def page(self, caller: domain.Caller, *, limit: int, cursor: str) -> domain.Page[domain.Batch]:
        org = organization_of(caller)
        return await asyncio.to_thread(
            self.repo.list_batches, organization_id=org, limit=page_limit(limit), cursor=cursor
        )

    async def record_item(
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
        org = organization_of(caller)
        if not is_uuid(batch_id):
            raise BatchNotFound(batch_id)
        check(index >= 0, "item.index must not be negative")
        check(status in ("succeeded", "failed"), "item.status must be SUCCEEDED or FAILED")
        prediction_id = prediction_id.strip()
        if status == "succeeded":
            check(bool(prediction_id), "a succeeded item needs prediction_id")
            if not is_uuid(prediction_id):
                raise PredictionNotFound(prediction_id)
        else:
            check(not prediction_id, "a failed item has no prediction_id")
            check(bool(error.strip()), "a failed item needs an error message")
        batch = await self.get(caller, batch_id)
        check(index < batch.total, f"item.index must be below the batch total ({batch.total})")
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

    async def item_page(
        self, caller: domain.Caller, batch_id: str, *, limit: int, cursor: str
    ) -> domain.Page[domain.BatchItem]:
        org = organization_of(caller)
        if not is_uuid(batch_id):
            raise BatchNotFound(batch_id)
        page = await asyncio.to_thread(
            self.repo.list_batch_items, organization_id=org, batch_id=batch_id, limit=page_limit(limit), cursor=cursor
        )
        if page is None:
            raise BatchNotFound(batch_id)
        return page
