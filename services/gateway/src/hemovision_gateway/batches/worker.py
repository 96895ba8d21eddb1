"""The Celery batch worker: one task per batch item on the `batches` queue.

    celery -A hemovision_gateway.batches.worker worker -Q batches --concurrency 2 --loglevel INFO

Messages are acknowledged after the task ends (acks_late) and put back if the worker
process dies (task_reject_on_worker_lost), so a worker killed mid-batch loses nothing; the
item's idempotency keys make the redelivery record nothing twice.

Celery beat (`celery -A hemovision_gateway.batches.worker beat`, started by `make up`) sends
the daily retention purge (PURGE_TASK_NAME, 03:00 UTC) to the same queue; the task runs history's
own `python -m hemovision_history purge` (its settings come from the HV_HISTORY_* environment).
In clusters a Kubernetes CronJob runs that command instead (deploy/k8s/base/history-retention.yaml).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from dataclasses import asdict

import redis.asyncio as aioredis
from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging

from hemovision_gateway.batches.processing import ItemTask, OnBehalfOfTokens, RetryableError, fail_item, process_item
from hemovision_gateway.clients import Clients
from hemovision_gateway.settings import Settings
from hemovision_telemetry import configure_logging, trace_celery_worker
from hemovision_telemetry.celery_metrics import serve_celery_metrics

log = logging.getLogger(__name__)

QUEUE = "batches"
TASK_NAME = "hemovision.batches.process_item"
MAX_RETRIES = 6
PURGE_TASK_NAME = "hemovision.history.purge"
PURGE_SCHEDULE = crontab(hour=3, minute=0)  # daily, UTC
PURGE_TIMEOUT_S = 3 * 3600


def make_celery(settings: Settings) -> Celery:
    """The Celery app for these settings (the API uses it to enqueue, the worker to consume)."""
    celery = Celery("hemovision_gateway", broker=settings.broker_url, backend=settings.backend_url)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_routes={TASK_NAME: {"queue": QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # An unacknowledged message (its worker died) is delivered again after visibility_timeout.
        # kombu sweeps for such messages only every interval x throttle seconds (100 s by default),
        # so a crashed item would wait far longer than the timeout says: sweep at a third of it.
        broker_transport_options={
            "visibility_timeout": settings.batch_visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, int(settings.batch_visibility_timeout_s // 3))),
            "unacked_restore_throttle": 1,
        },
        timezone="UTC",
        # Retention: one purge pass a day (expired blobs/records per organization, old audit events).
        beat_schedule={
            "history-retention-purge": {
                "task": PURGE_TASK_NAME,
                "schedule": PURGE_SCHEDULE,
                "options": {"queue": QUEUE, "expires": 6 * 3600},
            },
        },
    )
    return celery


settings = Settings()
app = make_celery(settings)
# Each worker process traces as "batch-worker": an item's task continues the trace of the request
# that enqueued it (the traceparent travels in the task headers; hemovision_telemetry.tracing).
trace_celery_worker("batch-worker")
# A worker serves its tasks' RED on its own port (whatever its pool: prefork children included).
serve_celery_metrics(app, "gateway-worker", settings.worker_metrics_port, host=settings.host)


@setup_logging.connect
def _json_logs(**_: object) -> None:
    """JSON lines with the task's trace id, like every other process (instead of Celery's own format)."""
    configure_logging("batch-worker", settings.log_level)


class _Runtime:
    """Per worker process: one event loop, one channel per peer, caches (created after fork,
    inside the loop so that the aio channels belong to it)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.clients, self.redis = self.loop.run_until_complete(self._connect())
        self.tokens = OnBehalfOfTokens()

    @staticmethod
    async def _connect():
        return Clients.connect(settings), aioredis.Redis.from_url(settings.redis_url)

    def run(self, coro):
        return self.loop.run_until_complete(coro)


_runtime: _Runtime | None = None


def runtime() -> _Runtime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = _Runtime()
    return _runtime


@app.task(name=TASK_NAME, bind=True, max_retries=MAX_RETRIES, acks_late=True, reject_on_worker_lost=True)
def process_batch_item(self, **kwargs) -> str:
    task = ItemTask(**kwargs)
    rt = runtime()
    final = self.request.retries >= MAX_RETRIES
    try:
        return rt.run(process_item(rt.clients, settings, rt.tokens, rt.redis, task, final_attempt=final))
    except Exception as exc:  # noqa: BLE001 - transient or unexpected: retry, and never leave the item unrecorded
        if not isinstance(exc, RetryableError):
            log.exception("batch item failed unexpectedly", extra={"batch_id": task.batch_id, "index": task.index})
        if final:
            return rt.run(fail_item(rt.clients, settings, rt.tokens, rt.redis, task,
                                    "could not be processed after several attempts"))
        log.warning("batch item will be retried", extra={"batch_id": task.batch_id, "index": task.index,
                                                         "error": str(exc)})
        raise self.retry(countdown=min(30, 2 ** self.request.retries), exc=exc) from None


@app.task(name=PURGE_TASK_NAME, acks_late=False)
def purge_history() -> str:
    """One retention pass, run as history's own command (a separate process with history's
    settings: the deletion rights belong to history, not to this worker). Several purgers never
    fight (history claims rows with SKIP LOCKED); a failed pass raises and runs again tomorrow."""
    done = subprocess.run([sys.executable, "-m", "hemovision_history", "purge"], capture_output=True, text=True,
                          timeout=PURGE_TIMEOUT_S, check=False)
    if done.returncode != 0:
        log.error("history retention purge failed", extra={"returncode": done.returncode,
                                                            "stderr": done.stderr[-4000:]})
        raise RuntimeError(f"hemovision_history purge exited with {done.returncode}")
    log.info("history retention purge", extra={"result": done.stdout.strip()[-4000:]})
    return done.stdout.strip()


def enqueue(celery: Celery, task: ItemTask) -> None:
    celery.send_task(TASK_NAME, kwargs=asdict(task), queue=QUEUE)
