"""Bootstrap shared by every HemoVision gRPC service.

    # services/<svc>/server.py: start the gRPC server, wrap it with what the service owns
    running = await create_server(settings, service_names=[...], register=lambda s: add_XServicer_to_server(..., s))
    return Server(running, service=domain_service, closers=[engine.dispose, verifier.close])
    # services/<svc>/__main__.py, the `serve` command: logs, tracing, then serve until SIGTERM
    run("<svc>", Settings(), create_server)
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
from hemovision_grpc_server.lifecycle import Server, run, serve
from hemovision_grpc_server.server import RunningServer, create_server
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
    "Server",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "create_channel",
    "create_server",
    "run",
    "serve",
    "wait_for_health",
]
