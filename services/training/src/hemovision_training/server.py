"""create_server(): the training gRPC server with its dependencies; serve() runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import Engine

import hemovision_grpc_server
from hemovision.training.v1 import training_pb2, training_pb2_grpc
from hemovision_database import create_db_engine
from hemovision_tokens import AuthKeyProvider, TokenInterceptor, TokenVerifier
from hemovision_training.adaptation import AdaptationService, CellSource
from hemovision_training.audit import HistoryAuditSink
from hemovision_training.history_cells import HistoryCellSource
from hemovision_training.service import TASK_NAME, AuditSink, TrainingService
from hemovision_training.servicer import TrainingServiceServicer
from hemovision_training.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name
PUBLIC_METHODS = {f"/{SERVICE_NAME}/GetActiveModelVersion"}


@dataclass
class TrainingServer:
    """The running server, its port, the service layer and what to close on shutdown."""

    running: hemovision_grpc_server.RunningServer
    service: TrainingService
    _closers: list[Callable[[], Any]] = field(default_factory=list)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.running.port

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for closer in reversed(self._closers):
            result = closer()
            if asyncio.iscoroutine(result):
                with contextlib.suppress(Exception):
                    await result

    async def stop(self, grace: float) -> None:
        await self.running.stop(grace)
        await self.close()


def celery_enqueuer(settings: Settings):
    """(enqueue(job_id) -> task id, revoke(task_id)) on the Celery app for `settings.redis_url`."""
    from hemovision_training.tasks import make_celery

    app = make_celery(settings.redis_url, settings.queue)

    def enqueue(job_id: str, task_name: str = TASK_NAME) -> str:
        result = app.send_task(task_name, args=[job_id], queue=settings.queue, task_id=job_id)
        return result.id

    def revoke(task_id: str) -> None:
        app.control.revoke(task_id)

    return enqueue, revoke


async def create_server(
    settings: Settings,
    *,
    engine: Engine | None = None,
    verifier: TokenVerifier | None = None,
    audit_sink: AuditSink | None = None,
    cell_source: CellSource | None = None,
    start_reaper: bool = True,
) -> TrainingServer:
    """Builds and starts the server on settings.host:settings.port (0 = any free port)."""
    closers: list[Callable[[], Any]] = []
    if engine is None:
        engine = create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
        closers.append(engine.dispose)
    if verifier is None:
        verifier = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=settings.redis_url)
        closers.append(verifier.close)
    if audit_sink is None:
        sink = HistoryAuditSink(settings.history_addr, timeout_s=settings.history_timeout_s)
        closers.append(sink.close)
        audit_sink = sink
    redis = aioredis.Redis.from_url(settings.redis_url)
    closers.append(redis.aclose)
    enqueue, revoke = celery_enqueuer(settings)
    if cell_source is None:
        cells = HistoryCellSource(settings.history_addr, timeout_s=settings.cells_timeout_s)
        closers.append(cells.close)
        cell_source = cells
    service = TrainingService(settings=settings, engine=engine, redis=redis, enqueue=enqueue, audit_sink=audit_sink)
    servicer = TrainingServiceServicer(service, AdaptationService(service, cells=cell_source), revoke=revoke)
    running = await hemovision_grpc_server.create_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda s: training_pb2_grpc.add_TrainingServiceServicer_to_server(servicer, s),
        interceptors=[TokenInterceptor(verifier, public_methods=PUBLIC_METHODS)],
    )
    server = TrainingServer(running=running, service=service, _closers=closers)
    if start_reaper:
        server._tasks.append(asyncio.create_task(service.run_reaper(), name="training-job-reaper"))
    return server


async def serve(settings: Settings) -> None:
    server = await create_server(settings)
    await hemovision_grpc_server.serve(server.running, grace=settings.grace_seconds, on_shutdown=[server.close])
