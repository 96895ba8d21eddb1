"""Bootstrap shared by every HemoVision gRPC service.

    server, port = await create_server(settings, services=[...], register=lambda s: add_XServicer_to_server(...))
    await serve(server, health, grace=settings.grace_seconds, on_shutdown=[pool.close])
"""

from hemovision_grpc_server.channels import DEFAULT_TIMEOUT_S, create_channel, wait_for_health
from hemovision_grpc_server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from hemovision_grpc_server.interceptors import ErrorInterceptor
from hemovision_grpc_server.server import RunningServer, create_server, serve
from hemovision_grpc_server.settings import GrpcServiceSettings

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AlreadyExists",
    "ErrorInterceptor",
    "FailedPrecondition",
    "GrpcServiceSettings",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RunningServer",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "create_channel",
    "create_server",
    "serve",
    "wait_for_health",
]
