"""create_server(): the history service wired to its database, blob store and token verifier."""

from __future__ import annotations

from hemovision.history.v1 import history_pb2_grpc
from hemovision_database import create_db_engine
from hemovision_grpc_server import Server
from hemovision_grpc_server import create_server as create_grpc_server
from hemovision_tokens import AuthKeyProvider, TokenInterceptor, TokenVerifier
from sqlalchemy import Engine

from hemovision_history import SERVICE_NAME
from hemovision_history.blobstore import BlobStore, blob_store_from_settings
from hemovision_history.domain import StoragePolicy
from hemovision_history.service import HistoryService
from hemovision_history.servicer import HistoryServicer
from hemovision_history.settings import Settings


def build_service(settings: Settings, *, engine: Engine | None = None, blobs: BlobStore | None = None) -> HistoryService:
    engine = engine or create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
    return HistoryService.create(
        engine,
        blobs or blob_store_from_settings(settings),
        StoragePolicy(store_images=settings.store_images, retention_days=settings.retention_days),
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
    service = build_service(settings, engine=engine, blobs=blobs)
    servicer = HistoryServicer(service)
    running = await create_grpc_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: history_pb2_grpc.add_HistoryServiceServicer_to_server(servicer, server),
        interceptors=[TokenInterceptor(verifier)],
    )
    # stop() also closes the verifier, then disposes of the engine (newest first)
    return Server(running, service=service, closers=[engine.dispose, verifier.close])
