"""create_server(): the history service wired to its database, blob store and token verifier."""

from __future__ import annotations

from hemovision.history.v1 import history_pb2_grpc
from hemovision_database import create_db_engine
from hemovision_grpc_server import Server
from hemovision_grpc_server import create_server as create_grpc_server
from hemovision_telemetry.metrics import scrape_time_gauge, sql_gauge
from hemovision_tokens import AuthKeyProvider, TokenInterceptor, TokenVerifier
from sqlalchemy import Engine

from hemovision_history import SERVICE_NAME
from hemovision_history.blobstore import BlobStore, blob_store_from_settings
from hemovision_history.domain import StoragePolicy
from hemovision_history.service import HistoryService
from hemovision_history.service.drift import RedisReferences, ReferenceSource
from hemovision_history.servicer import HistoryServicer
from hemovision_history.settings import Settings


def build_service(
    settings: Settings, *, engine: Engine | None = None, blobs: BlobStore | None = None,
    audit_retention_engine: Engine | None = None, drift_references: ReferenceSource | None = None,
) -> HistoryService:
    engine = engine or create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
    return HistoryService.create(
        engine,
        blobs or blob_store_from_settings(settings),
        StoragePolicy(store_images=settings.store_images, retention_days=settings.retention_days,
                      audit_retention_days=settings.audit_retention_days),
        audit_append_services=settings.audit_append_service_set,
        audit_retention_engine=audit_retention_engine,
        drift_references=drift_references,
    )


async def create_server(
    settings: Settings,
    *,
    verifier: TokenVerifier | None = None,
    blobs: BlobStore | None = None,
) -> Server[HistoryService]:
    """Starts the server on settings.host:settings.port (0 = a free port). Every RPC needs a
    bearer token; tests pass TokenFactory().verifier()."""
    if verifier is None:
        verifier = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=settings.redis_url)
    engine = create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
    references = RedisReferences(settings.redis_url)
    service = build_service(settings, engine=engine, blobs=blobs, drift_references=references)
    servicer = HistoryServicer(service)
    running = await create_grpc_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: history_pb2_grpc.add_HistoryServiceServicer_to_server(servicer, server),
        interceptors=[TokenInterceptor(verifier)],
    )
    sql_gauge(engine, "hemovision_batches", "Batches by status (queued/running: in progress).", ["status"],
              "SELECT status, count(*) FROM history.batches GROUP BY status")
    sql_gauge(engine, "hemovision_batch_items_pending", "Items of queued or running batches not finished yet.", [],
              "SELECT coalesce(sum(b.total), 0) - (SELECT count(*) FROM history.batch_items i "
              "JOIN history.batches o ON o.id = i.batch_id WHERE o.status IN ('queued', 'running')) "
              "FROM history.batches b WHERE b.status IN ('queued', 'running')")
    drift_service = service.drift
    assert drift_service is not None
    scrape_time_gauge(
        "hemovision_drift_score",
        "Drift of an organization's recent cells from its model version's reference (population stability "
        "index; component ood_score, confidence, class_mix, overall = max of ood_score and confidence).",
        ["organization", "component"], drift_service.metric_values)
    # stop() also closes the verifier, then disposes of the engine (newest first)
    return Server(running, service=service, closers=[engine.dispose, verifier.close, references.close])
