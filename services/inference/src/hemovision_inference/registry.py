"""The training registry, as far as inference needs it: which version is active."""

from __future__ import annotations

import logging

import grpc

import hemovision_grpc_server
from hemovision.training.v1 import training_pb2, training_pb2_grpc

log = logging.getLogger(__name__)


class RegistryClient:
    """TrainingService.GetActiveModelVersion (a public RPC: no token). One channel, deadlines."""

    def __init__(self, address: str, *, timeout_s: float = 3.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.channel = hemovision_grpc_server.create_channel(address)
        self.stub = training_pb2_grpc.TrainingServiceStub(self.channel)

    async def active_version(self, model_name: str) -> int | None:
        """The registry's active version; None when it has none or cannot be reached (logged by the caller)."""
        try:
            reply = await self.stub.GetActiveModelVersion(
                training_pb2.GetActiveModelVersionRequest(model_name=model_name),
                timeout=self.timeout_s,
                wait_for_ready=False,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return None
            raise RegistryUnavailable(f"{exc.code().name}: {exc.details()}") from None
        return reply.version or None

    async def close(self) -> None:
        await self.channel.close()


class RegistryUnavailable(Exception):
    """The registry could not be asked."""
