"""create_server(): the reports service with its history/auth channels and token verifier."""

from __future__ import annotations

from hemovision.reports.v1 import reports_pb2_grpc
from hemovision_grpc_server import Server
from hemovision_grpc_server import create_server as create_grpc_server
from hemovision_tokens import AuthKeyProvider, TokenInterceptor, TokenVerifier

from hemovision_reports import SERVICE_NAME
from hemovision_reports.clients import HistoryClient, OrganizationNames
from hemovision_reports.service import ReportsService
from hemovision_reports.servicer import ReportsServicer
from hemovision_reports.settings import Settings


async def create_server(settings: Settings, *, verifier: TokenVerifier | None = None) -> Server[ReportsService]:
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
    # stop() also closes the channels, then the verifier (newest first)
    return Server(running, service=service,
                  closers=[verifier.close, service.organizations.close, service.history.close])
