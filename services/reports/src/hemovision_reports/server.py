"""create_server(): the reports service with its history/auth channels and token verifier."""

from __future__ import annotations

from dataclasses import dataclass

from hemovision.reports.v1 import reports_pb2_grpc
from hemovision_grpc_server import RunningServer
from hemovision_grpc_server import create_server as create_grpc_server
from hemovision_tokens import AuthKeyProvider, TokenInterceptor, TokenVerifier

from hemovision_reports import SERVICE_NAME
from hemovision_reports.clients import HistoryClient, OrganizationNames
from hemovision_reports.service import ReportsService
from hemovision_reports.servicer import ReportsServicer
from hemovision_reports.settings import Settings


@dataclass
class ReportsServer:
    running: RunningServer
    service: ReportsService
    verifier: TokenVerifier

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 0) -> None:
        await self.running.stop(grace)
        await self.close()

    async def close(self) -> None:
        await self.service.history.close()
        await self.service.organizations.close()
        await self.verifier.close()


async def create_server(settings: Settings, *, verifier: TokenVerifier | None = None) -> ReportsServer:
    """Starts on settings.host:settings.port (0 = free port). An empty auth_addr skips the
    organization-name lookup (the report shows the organization id)."""
    if verifier is None:
        verifier = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=settings.redis_url)
    service = ReportsService(
        HistoryClient(settings.history_addr, timeout=settings.call_timeout_s),
        OrganizationNames(settings.auth_addr, timeout=settings.call_timeout_s),
        max_flagged_thumbnails=settings.max_flagged_thumbnails,
    )
    servicer = ReportsServicer(service)
    running = await create_grpc_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: reports_pb2_grpc.add_ReportsServiceServicer_to_server(servicer, server),
        interceptors=[TokenInterceptor(verifier)],
    )
    return ReportsServer(running=running, service=service, verifier=verifier)
