"""create_server() builds and starts a grpc.aio server (health, reflection, error mapping) -> RunningServer.
The lifecycle around it (Service, serve, run) is in lifecycle.py."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from hemovision_contracts.topology import LIVENESS_HEALTH_SERVICE
from hemovision_telemetry.metrics import metrics_enabled
from hemovision_telemetry.tracing import exporting

from hemovision_grpc_server.interceptors import ErrorInterceptor
from hemovision_grpc_server.metrics import MetricsInterceptor
from hemovision_grpc_server.settings import GrpcServiceSettings
from hemovision_grpc_server.tls import TlsSettings, load_tls

log = logging.getLogger(__name__)


@dataclass
class RunningServer:
    """A started server, its bound port and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)
    stopping: bool = False
    # True when the port requires mutual TLS (HV_TLS_*), False for plaintext.
    tls: bool = False

    async def set_serving(self, serving: bool) -> None:
        """Flips every registered service (and the overall "" entry) between SERVING and NOT_SERVING.
        Once stop() began, the server stays NOT_SERVING whatever a readiness callback says."""
        serving = serving and not self.stopping
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING first (so load balancers drain), then stop with grace."""
        self.stopping = True
        await self.set_serving(False)
        await self.server.stop(grace)


async def create_server(
    settings: GrpcServiceSettings,
    *,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    serving: bool = True,
    tls: TlsSettings | None = None,
) -> RunningServer:
    """Builds and starts an aio server on settings.host:settings.port (0 = any free port).

    The port is plaintext, or requires mutual TLS (a client certificate signed by the CA) when
    `tls` (default: the HV_TLS_* environment) is set; a half-set or unreadable setting raises
    TlsError before anything is bound.

    `service_names` are the full proto names (e.g. "hemovision.auth.v1.AuthService")
    published through health and reflection. `serving=False` starts NOT_SERVING, for
    services that become ready later (inference waits for a warm model).
    """
    material = load_tls(tls)
    max_bytes = settings.max_message_mb * 1024 * 1024
    server = grpc.aio.server(
        # metrics outermost: every RPC counted with the status it really ended with. The caller's
        # trace: OpenTelemetry's interceptor (put first by configure_tracing) when spans are
        # exported, else ErrorInterceptor continues it (ids only, no extra interceptor)
        interceptors=[*([MetricsInterceptor()] if metrics_enabled() else []), *interceptors,
                      ErrorInterceptor(trace_context=not exporting())],
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.so_reuseport", 0),
            # Clients re-resolve and rebalance when a connection ends: after scale-out new pods
            # get traffic within ~max_connection_age; in-flight calls get the grace period.
            ("grpc.max_connection_age_ms", settings.max_connection_age_s * 1000),
            ("grpc.max_connection_age_grace_ms", 30_000),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # liveness: SERVING while this process answers at all; set_serving() never touches it, so a
    # dependency that is down makes the pod unready, never restarted
    await health_servicer.set(LIVENESS_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    bind = f"{settings.host}:{settings.port}"
    if material is None:
        port = server.add_insecure_port(bind)
    else:
        port = server.add_secure_port(bind, material.server_credentials())
    if port == 0:
        raise RuntimeError(f"could not bind {bind}")
    await server.start()
    log.info("grpc port bound", extra={"port": port, "transport": "mtls" if material else "plaintext"})
    running = RunningServer(
        server=server, port=port, health=health_servicer, service_names=list(service_names), tls=material is not None
    )
    await running.set_serving(serving)
    return running

