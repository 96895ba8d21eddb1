"""create_server(): the history service wired to its database, blob store and token verifier."""

from __future__ import annotations

from dataclasses import dataclass

from hemovision.history.v1 import history_pb2_grpc
from hemovision_database import create_db_engine
from hemovision_grpc_server import RunningServer
from hemovision_grpc_server import create_server as create_grpc_server
from hemovision_tokens import AuthKeyProvider, TokenInterceptor, TokenVerifier
from sqlalchemy import Engine

from hemovision_history import SERVICE_NAME
from hemovision_history.blobstore import BlobStore, blob_store_from_settings
from hemovision_history.domain import StoragePolicy
from hemovision_history.service import HistoryService
from hemovision_history.servicer import HistoryServicer
from hemovision_history.settings import Settings


@dataclass
class HistoryServer:
    """The running server plus what must be closed on shutdown."""

    running: RunningServer
    service: HistoryService
    engine: Engine
    verifier: TokenVerifier

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 0) -> None:
        await self.running.stop(grace)
        await self.close()

    async def close(self) -> None:
        await self.verifier.close()
        self.engine.dispose()


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
) -> HistoryServer:
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
    return HistoryServer(running=running, service=service, engine=engine, verifier=verifier)
