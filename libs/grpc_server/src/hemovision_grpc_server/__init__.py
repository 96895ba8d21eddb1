"""Bootstrap shared by every HemoVision gRPC service.

    # services/<svc>/server.py: start the gRPC server, wrap it with what the service owns
    running = await create_server(settings, service_names=[...], register=lambda s: add_XServicer_to_server(..., s))
    return Server(running, service=domain_service, closers=[engine.dispose, verifier.close])
    # services/<svc>/__main__.py, the `serve` command: logs, tracing, then serve until SIGTERM
    run("<svc>", Settings(), create_server)

Servers and channels are plaintext, or mutual TLS when HV_TLS_CERT_FILE / HV_TLS_KEY_FILE /
HV_TLS_CA_FILE are set (tls.py); certificates.py makes a local CA for `hemovision up --tls`.
"""

from hemovision_grpc_server.channels import (
    DEFAULT_TIMEOUT_S,
    create_blocking_channel,
    create_channel,
    wait_for_health,
)
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
from hemovision_grpc_server.tls import TlsError, TlsMaterial, TlsSettings, load_tls

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
    "TlsError",
    "TlsMaterial",
    "TlsSettings",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "create_blocking_channel",
    "create_channel",
    "create_server",
    "run",
    "load_tls",
    "serve",
    "wait_for_health",
]
