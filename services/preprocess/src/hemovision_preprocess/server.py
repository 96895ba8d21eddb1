"""Builds the preprocess gRPC server."""

from __future__ import annotations

import grpc

from hemovision.preprocess.v1 import preprocess_pb2, preprocess_pb2_grpc
from hemovision_grpc_server import RunningServer, create_server as create_grpc_server
from hemovision_preprocess.service import PreprocessCore
from hemovision_preprocess.servicer import PreprocessServicer
from hemovision_preprocess.settings import Settings

SERVICE_NAME = preprocess_pb2.DESCRIPTOR.services_by_name["PreprocessService"].full_name


async def create_server(settings: Settings, *, verifier: object | None = None) -> RunningServer:
    """Starts the server. `verifier` is a hemovision_tokens.TokenVerifier; every RPC then needs a token."""
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if verifier is not None:
        from hemovision_tokens import TokenInterceptor

        interceptors.append(TokenInterceptor(verifier, public_methods=set()))
    servicer = PreprocessServicer(PreprocessCore(settings))
    return await create_grpc_server(
        settings,
        service_names=[SERVICE_NAME],
        register=lambda server: preprocess_pb2_grpc.add_PreprocessServiceServicer_to_server(servicer, server),
        interceptors=interceptors,
    )
