"""One gRPC channel per peer, created once (at startup) and closed at shutdown."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision.auth.v1 import auth_pb2_grpc
from hemovision.history.v1 import history_pb2_grpc
from hemovision.inference.v1 import inference_pb2_grpc
from hemovision.reports.v1 import reports_pb2_grpc
from hemovision.training.v1 import training_pb2_grpc
from hemovision_contracts import origin_metadata
from hemovision_contracts.topology import SERVERS, addr_setting
from hemovision_grpc_server import create_channel
from hemovision_tokens import bearer_metadata

from hemovision_gateway.settings import Settings

PEERS = SERVERS["gateway"].peers


@dataclass
class Clients:
    """Stubs over one reused channel per peer."""

    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @classmethod
    def connect(cls, settings: Settings) -> Clients:
        return cls(channels={peer: create_channel(getattr(settings, addr_setting(peer))) for peer in PEERS})

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        return auth_pb2_grpc.AuthServiceStub(self.channels["auth"])

    @property
    def inference(self) -> inference_pb2_grpc.InferenceServiceStub:
        return inference_pb2_grpc.InferenceServiceStub(self.channels["inference"])

    @property
    def history(self) -> history_pb2_grpc.HistoryServiceStub:
        return history_pb2_grpc.HistoryServiceStub(self.channels["history"])

    @property
    def reports(self) -> reports_pb2_grpc.ReportsServiceStub:
        return reports_pb2_grpc.ReportsServiceStub(self.channels["reports"])

    @property
    def training(self) -> training_pb2_grpc.TrainingServiceStub:
        return training_pb2_grpc.TrainingServiceStub(self.channels["training"])

    async def health(self, timeout: float = 2.0) -> dict[str, str]:
        """grpc.health.v1 status of every peer's service ("SERVING", "NOT_SERVING", or the error code)."""

        async def check(name: str) -> tuple[str, str]:
            stub = health_pb2_grpc.HealthStub(self.channels[name])
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVERS[name].health_service), timeout=timeout)
                return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as exc:
                return name, exc.code().name

        results = await asyncio.gather(*(check(n) for n in self.channels))
        return dict(results)

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch in self.channels.values()), return_exceptions=True)


# Where the HTTP request being served came from (the real client behind trusted proxies and its
# User-Agent), as metadata pairs; set per request by security.RequestOriginMiddleware. Empty
# outside a request (batch workers, background sweeps).
_ORIGIN: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("hv_request_origin",
                                                                                      default=())


def set_request_origin(client_ip: str, user_agent: str) -> contextvars.Token:
    return _ORIGIN.set(origin_metadata(client_ip, user_agent))


def reset_request_origin(token: contextvars.Token) -> None:
    _ORIGIN.reset(token)


def origin() -> tuple[tuple[str, str], ...]:
    """The metadata that forwards the request's origin (hv-client-ip, hv-user-agent) on a call that
    carries no caller token (sign-in, refresh, register ...)."""
    return _ORIGIN.get()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata that forwards a caller's token (with the gateway's revocation proof when it
    checked the token for this request: hemovision_tokens.revocation_proof) and the request's
    origin (hv-client-ip, hv-user-agent)."""
    return bearer_metadata(token) + _ORIGIN.get()
