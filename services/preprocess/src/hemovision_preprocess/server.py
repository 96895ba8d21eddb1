"""create_server(): the preprocess gRPC server (a hemovision_grpc_server.Server), for tests (port 0)
and for `serve` (hemovision_grpc_server.run)."""

from __future__ import annotations

import grpc

from hemovision.preprocess.v1 import preprocess_pb2, preprocess_pb2_grpc
from hemovision_grpc_server import Server, create_server as create_grpc_server
from hemovision_preprocess.service import PreprocessCore
from hemovision_preprocess.servicer import PreprocessServicer
from hemovision_preprocess.settings import Settings

SERVICE_NAME = preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"].full_name


async def create_server(settings: Settings, *, verifier: object | None = None) -> Server:
    """Starts the server. `verifier` is a hemovision_tokens.TokenVerifier; every RPC then needs a
    token. None builds one from settings (auth at settings.auth_addr, revocation in
    settings.redis_url) unless settings.require_token is false; the one built here is closed on stop."""
    interceptors: list[grpc.aio.ServerInterceptor] = []
    closers = []
    if verifier is None and settings.require_token:
        from hemovision_tokens import AuthKeyProvider, TokenVerifier

        verifier = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=settings.redis_url)
        closers.append(verifier.close)
    if verifier is not None:
        from hemovision_tokens import TokenInterceptor

        interceptors.append(TokenInterceptor(verifier, public_methods=set()))
    servicer = PreprocessServicer(PreprocessCore(settings))
    running = await create_grpc_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: preprocess_pb2_grpc.add_PreprocessServiceServicer_to_server(servicer, server),
        interceptors=interceptors,
    )
    return Server(running, closers=closers)
