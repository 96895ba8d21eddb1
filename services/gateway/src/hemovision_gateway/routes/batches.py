"""Batches: upload many images or one ZIP, follow progress (JSON or server-sent events), PDF report."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from typing import Annotated

import grpc
from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from hemovision.reports.v1 import reports_pb2

from hemovision_gateway import idempotency
from hemovision_gateway.batches import storage as batch_storage, sweeper as batch_sweeper
from hemovision_gateway.batches.processing import ItemTask, channel_name, fail_item, process_item, record_item
from hemovision_gateway.clients import bearer
from hemovision_gateway.errors import ApiError, ErrorBody, api_error_from_grpc
from hemovision_gateway.schemas import Batch, BatchAccepted, BatchDetail, BatchItem, BatchPage
from hemovision_gateway.security import Ctx, CurrentUser, VerifiedUser

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["batches"])

DONE = {history_pb2.BATCH_STATUS_COMPLETED, history_pb2.BATCH_STATUS_FAILED}


@router.post("/batches", status_code=202, response_model=BatchAccepted, responses={
    202: {"content": {"application/json": {"example": {
        "id": "5d7c...", "status": "queued", "total": 24, "failed": 1,
        "links": {"self": "/api/v1/batches/5d7c...", "events": "/api/v1/batches/5d7c.../events",
                  "report": "/api/v1/batches/5d7c.../report.pdf"}}}}},
    413: {"model": ErrorBody, "description": "upload, archive or item count over the limit"}})
async def create_batch(
    request: Request,
    ctx: Ctx,
    user: VerifiedUser,
    files: Annotated[list[UploadFile], File(description="images, or one ZIP of images")],
    sample_id: Annotated[str, Form(max_length=100)] = "",
    slide_id: Annotated[str, Form(max_length=100)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> BatchAccepted | JSONResponse:
    """Accepts the upload, records bad items as failed with their reason, queues the rest."""
    key = idempotency.validate_key(idempotency_key)
    replayed = await idempotency.replay(ctx, "batches", user.organization_id, user.user_id, key)
    if replayed is not None:
        return replayed
    settings = ctx.settings
    raw: list[tuple[str, object]] = []
    total = 0
    for f in files:
        await f.seek(0)
        size = f.size if f.size is not None else len(await f.read())
        total += size
        if total > settings.max_batch_bytes:
            raise ApiError(413, "too_large", f"the upload is over the limit of {settings.max_batch_bytes:,} bytes")
        await f.seek(0)
        head = await f.read(4)
        if not batch_storage.is_zip(head) and size > settings.max_image_bytes:
            raise ApiError(413, "too_large",
                           f"{f.filename or 'a file'} is over the limit of {settings.max_image_bytes:,} bytes")
        raw.append((f.filename or "", f.file))
    owner = batch_storage.owner_dir(user.organization_id, user.user_id)
    staging = batch_storage.staging_dir(settings, owner)
    try:
        items = await asyncio.to_thread(batch_storage.build_items, raw, settings, staging)
        batch = await ctx.clients.history.CreateBatch(
            history_pb2.CreateBatchRequest(idempotency_key=f"api:{key}" if key else "", total=len(items),
                                           sample_id=sample_id, slide_id=slide_id, note=note),
            metadata=bearer(user.token), timeout=settings.rpc_timeout_s)
        directory = batch_storage.batch_dir(settings, owner, batch.id)
        await asyncio.to_thread(batch_storage.finalize, staging, directory, items)
    finally:
        if staging.exists():
            await asyncio.to_thread(shutil.rmtree, staging, True)
    failed = 0
    tasks = []
    for item in items:
        if item.error:
            failed += 1
            await record_item(ctx.clients, settings, user.token, batch_id=batch.id, index=item.index,
                              filename=item.filename, error=item.error)
            continue
        tasks.append(ItemTask(batch_id=batch.id, index=item.index, organization_id=user.organization_id,
                              user_id=user.user_id, filename=item.filename,
                              path=str(batch_storage.item_path(directory, item.index)),
                              sample_id=sample_id, slide_id=slide_id, note=note))
    if tasks and not settings.batch_inline:
        await asyncio.to_thread(batch_sweeper.write_tasks, directory, tasks)  # before any can be lost
    for task in tasks:
        await schedule(request, task)
    batch_storage.remove_if_done(directory)
    accepted = BatchAccepted.create(batch.id, total=len(items), failed=failed)
    if key:
        await idempotency.remember(ctx, "batches", user.organization_id, user.user_id, key, 202,
                                   accepted.model_dump(mode="json"))
    return accepted


async def schedule(request: Request, task: ItemTask) -> None:
    """Celery in production; in-process background tasks when HV_GATEWAY_BATCH_INLINE is set."""
    app = request.app
    ctx = app.state.ctx
    if ctx.settings.batch_inline:
        async def run() -> None:
            for attempt in range(4):
                try:
                    await process_item(ctx.clients, ctx.settings, app.state.obo_tokens, ctx.redis,
                                       task, final_attempt=attempt == 3)
                    return
                except Exception as exc:  # noqa: BLE001 - retried like the worker does
                    log.warning("inline batch item failed: %r", exc)
                    await asyncio.sleep(0.5 * (attempt + 1))
            try:
                await fail_item(ctx.clients, ctx.settings, app.state.obo_tokens, ctx.redis, task,
                                "could not be processed after several attempts")
            except Exception as exc:  # noqa: BLE001
                log.warning("could not record a failed batch item: %r", exc)

        t = asyncio.create_task(run())
        app.state.background.add(t)
        t.add_done_callback(app.state.background.discard)
        return
    from hemovision_gateway.batches.worker import enqueue

    await asyncio.to_thread(enqueue, app.state.celery, task)


@router.get("/batches")
async def list_batches(user: CurrentUser, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                       cursor: Annotated[str, Query(max_length=500)] = "") -> BatchPage:
    reply = await ctx.clients.history.ListBatches(
        history_pb2.ListBatchesRequest(page=common_pb2.PageRequest(limit=limit, cursor=cursor)),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return BatchPage(items=[Batch.from_pb(b) for b in reply.items], next_cursor=reply.next_cursor or None)


async def _items(ctx, token: str, batch_id: str) -> list[BatchItem]:
    items: list[BatchItem] = []
    cursor = ""
    while True:
        reply = await ctx.clients.history.ListBatchItems(
            history_pb2.ListBatchItemsRequest(batch_id=batch_id, page=common_pb2.PageRequest(limit=200, cursor=cursor)),
            metadata=bearer(token), timeout=ctx.settings.rpc_timeout_s)
        items.extend(BatchItem.from_pb(i) for i in reply.items)
        cursor = reply.next_cursor
        if not cursor or len(items) >= 5000:
            return items


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, user: CurrentUser, ctx: Ctx,
                    include_items: bool = True) -> BatchDetail | Batch:
    """Progress, the WBC differential (percent per class), flagged count and the per-item table
    (`items`, absent with include_items=false)."""
    b = await ctx.clients.history.GetBatch(history_pb2.GetBatchRequest(id=batch_id), metadata=bearer(user.token),
                                           timeout=ctx.settings.rpc_timeout_s)
    if include_items:
        return BatchDetail.from_pb(b, items=await _items(ctx, user.token, batch_id))
    return Batch.from_pb(b)


@router.get("/batches/{batch_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def batch_events(batch_id: str, user: CurrentUser, ctx: Ctx) -> StreamingResponse:
    """Server-sent events: `progress` (the batch) on every change, `done` when complete."""
    get = history_pb2.GetBatchRequest(id=batch_id)
    first = await ctx.clients.history.GetBatch(get, metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)

    async def events() -> AsyncIterator[str]:
        pubsub = ctx.redis.pubsub()
        try:
            await pubsub.subscribe(channel_name(batch_id))
        except Exception:  # noqa: BLE001 - fall back to polling
            pubsub = None
        last = None
        b = first
        try:
            for _ in range(7200):
                snapshot = Batch.from_pb(b).model_dump(mode="json")
                if snapshot != last:
                    yield f"event: progress\ndata: {json.dumps(snapshot)}\n\n"
                    last = snapshot
                else:
                    yield ": keep-alive\n\n"
                if b.status in DONE:
                    yield f"event: done\ndata: {json.dumps(snapshot)}\n\n"
                    return
                if pubsub is not None:
                    try:
                        await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    except Exception:  # noqa: BLE001
                        await asyncio.sleep(1.0)
                else:
                    await asyncio.sleep(1.0)
                try:
                    b = await ctx.clients.history.GetBatch(get, metadata=bearer(user.token),
                                                           timeout=ctx.settings.rpc_timeout_s)
                except grpc.aio.AioRpcError as exc:
                    err = api_error_from_grpc(exc)
                    yield f"event: error\ndata: {json.dumps({'code': err.code, 'message': err.message})}\n\n"
                    return
        finally:
            if pubsub is not None:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/batches/{batch_id}/report.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
async def batch_report(batch_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    report = await ctx.clients.reports.RenderBatchReport(reports_pb2.RenderBatchReportRequest(batch_id=batch_id),
                                                         metadata=bearer(user.token),
                                                         timeout=ctx.settings.reports_timeout_s)
    return Response(report.pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="hemovision-batch-{batch_id[:36]}.pdf"'})
