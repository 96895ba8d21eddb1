"""Processing one batch item: the same pipeline as a single upload, with an on-behalf-of
token, recorded idempotently (prediction key `batch:<batch>:<index>`, item on (batch, index)),
so a redelivered item never duplicates anything."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from hemovision.auth.v1 import auth_pb2
from hemovision.history.v1 import history_pb2

from hemovision_gateway.batches import storage as batch_storage
from hemovision_gateway.clients import Clients, bearer
from hemovision_gateway.errors import ApiError, api_error_from_grpc
from hemovision_gateway.pipeline import Upload, run_prediction
from hemovision_gateway.settings import Settings

log = logging.getLogger(__name__)


def channel_name(batch_id: str) -> str:
    """Redis pub/sub channel that carries a batch's progress events."""
    return f"hv:gw:batch:{batch_id}"


class RetryableError(Exception):
    """A transient failure (a service down, a deadline): the item is retried later."""


@dataclass
class ItemTask:
    batch_id: str
    index: int
    organization_id: str
    user_id: str
    filename: str
    path: str
    sample_id: str = ""
    slide_id: str = ""
    note: str = ""


class OnBehalfOfTokens:
    """Tokens auth issues to our service credential to act for a user; cached until near expiry."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, str]] = {}

    async def get(self, clients: Clients, settings: Settings, user_id: str, purpose: str) -> str:
        cached = self._cache.get(user_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        reply = await clients.auth.IssueOnBehalfOfToken(
            auth_pb2.IssueOnBehalfOfTokenRequest(service_id=settings.service_id, service_secret=settings.service_secret,
                                                 user_id=user_id, purpose=purpose),
            timeout=settings.rpc_timeout_s,
        )
        self._cache[user_id] = (time.monotonic() + max(10, (reply.expires_in or 300) - 60), reply.access_token)
        return reply.access_token


async def record_item(clients: Clients, settings: Settings, token: str, *, batch_id: str, index: int,
                      filename: str, prediction_id: str = "", error: str = "") -> None:
    status = history_pb2.BATCH_ITEM_STATUS_FAILED if error else history_pb2.BATCH_ITEM_STATUS_SUCCEEDED
    await clients.history.RecordBatchItem(
        history_pb2.RecordBatchItemRequest(item=history_pb2.BatchItem(
            batch_id=batch_id, index=index, filename=filename, status=status, prediction_id=prediction_id,
            error=error[:1000])),
        metadata=bearer(token), timeout=settings.rpc_timeout_s)


async def publish(redis: Any, batch_id: str, event: dict) -> None:
    if redis is None:
        return
    try:
        await redis.publish(channel_name(batch_id), json.dumps(event))
    except Exception:  # noqa: BLE001 - progress also comes from polling history
        pass


async def process_item(clients: Clients, settings: Settings, tokens: OnBehalfOfTokens,
                       redis: Any, task: ItemTask, *, final_attempt: bool = False) -> str:
    """Returns "succeeded", "failed" or "already_done"; raises RetryableError for transient trouble."""
    path = Path(task.path)
    if not path.exists():
        return "already_done"  # recorded by an earlier delivery, which then removed the file
    try:
        token = await tokens.get(clients, settings, task.user_id, f"batch {task.batch_id}")
    except grpc.aio.AioRpcError as exc:
        raise RetryableError(f"on-behalf-of token: {exc.code().name}") from None
    data = path.read_bytes()
    outcome = "succeeded"
    try:
        try:
            body = await run_prediction(
                clients, settings, token=token,
                upload=Upload(data=data, filename=task.filename, sample_id=task.sample_id, slide_id=task.slide_id,
                              note=task.note, batch_id=task.batch_id),
                idempotency_key=f"batch:{task.batch_id}:{task.index}",
            )
            await record_item(clients, settings, token, batch_id=task.batch_id, index=task.index,
                              filename=task.filename, prediction_id=body.id)
        except ApiError as err:
            if err.status >= 500 or err.status in (401, 429):
                if not final_attempt:
                    raise RetryableError(err.message) from None
            outcome = "failed"
            await record_item(clients, settings, token, batch_id=task.batch_id, index=task.index,
                              filename=task.filename, error=err.message)
    except grpc.aio.AioRpcError as exc:
        raise RetryableError(api_error_from_grpc(exc).message) from None
    path.unlink(missing_ok=True)
    batch_storage.remove_if_done(path.parent)
    await publish(redis, task.batch_id, {"index": task.index, "status": outcome})
    return outcome


async def fail_item(clients: Clients, settings: Settings, tokens: OnBehalfOfTokens, redis: Any, task: ItemTask,
                    reason: str) -> str:
    """Records an item that cannot be processed as failed, so the batch still completes."""
    path = Path(task.path)
    if not path.exists():
        return "already_done"
    token = await tokens.get(clients, settings, task.user_id, f"batch {task.batch_id}")
    await record_item(clients, settings, token, batch_id=task.batch_id, index=task.index, filename=task.filename,
                      error=reason)
    path.unlink(missing_ok=True)
    batch_storage.remove_if_done(path.parent)
    await publish(redis, task.batch_id, {"index": task.index, "status": "failed"})
    return "failed"
