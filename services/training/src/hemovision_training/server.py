"""create_server(): the training gRPC server with its dependencies (a hemovision_grpc_server.Server), for
tests (port 0) and for `serve` (hemovision_grpc_server.run)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import Engine

import hemovision_grpc_server
from hemovision.training.v1 import training_pb2, training_pb2_grpc
from hemovision_database import create_db_engine
from hemovision_telemetry.metrics import sql_gauge
from hemovision_tokens import AuthKeyProvider, TokenInterceptor, TokenVerifier
from hemovision_training import drift
from hemovision_training.adaptation import AdaptationService, CellSource
from hemovision_training.audit import HistoryAuditSink
from hemovision_training.history_cells import HistoryCellSource
from hemovision_training.service import TASK_NAME, AuditSink, TrainingService
from hemovision_training.servicer import TrainingServiceServicer
from hemovision_training.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name
# Inference replicas poll these without a token.
PUBLIC_METHODS = {f"/{SERVICE_NAME}/GetActiveModelVersion", f"/{SERVICE_NAME}/GetRollout"}


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
) -> hemovision_grpc_server.Server[TrainingService]:
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
    sql_gauge(engine, "hemovision_training_jobs", "Training and adaptation jobs by kind and status.",
              ["kind", "status"], "SELECT kind, status, count(*) FROM training.training_jobs GROUP BY kind, status")
    sql_gauge(engine, "hemovision_training_job_progress", "Share of epochs done of each running job (0..1).",
              ["job_id", "kind"], "SELECT id, kind, CASE WHEN total_epochs > 0 THEN epoch::float / total_epochs "
              "ELSE 0 END FROM training.training_jobs WHERE status = 'running'")
    # stop() also cancels the job reaper and closes what was made here (not what was passed in)
    server = hemovision_grpc_server.Server(running, service=service, closers=closers)
    if start_reaper:
        server.start_task(service.run_reaper(), name="training-job-reaper")
        # history reads drift references from Redis: re-publish every registered version's
        server.start_task(asyncio.to_thread(drift.publish_registered, engine, settings.redis_url, settings.model_name),
                          name="drift-references")
    return server
