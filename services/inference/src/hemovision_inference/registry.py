"""The training registry, as far as inference needs it: which version is active, for the platform
and for the caller's organization."""

from __future__ import annotations

import logging

import grpc

import hemovision_grpc_server
from hemovision.training.v1 import training_pb2, training_pb2_grpc
from hemovision_tokens import bearer_metadata

log = logging.getLogger(__name__)


class RegistryClient:
    """TrainingService.GetActiveModelVersion (a public RPC: no token) and GetOrganizationModel (asked
    with the caller's own token: the registry answers for the token's organization). One channel,
    deadlines."""

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

    async def organization_version(self, token: str, model_name: str) -> tuple[int | None, bool]:
        """(version, adapted) for the token's organization: its active adapted version with adapted=True,
        else the platform's with adapted=False; (None, False) when the registry has none."""
        try:
            reply = await self.stub.GetOrganizationModel(
                training_pb2.GetOrganizationModelRequest(model_name=model_name),
                metadata=bearer_metadata(token),
                timeout=self.timeout_s,
                wait_for_ready=False,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return None, False
            raise RegistryUnavailable(f"{exc.code().name}: {exc.details()}") from None
        return (reply.version or None), bool(reply.adapted and reply.version)

    async def rollout(self, model_name: str):
        """The registry's running rollout (rollout.RolloutInfo), None when none is running."""
        from hemovision_inference.rollout import RolloutInfo

        try:
            reply = await self.stub.GetRollout(
                training_pb2.GetRolloutRequest(model_name=model_name), timeout=self.timeout_s, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise RegistryUnavailable(f"{exc.code().name}: {exc.details()}") from None
        if reply.status != training_pb2.ROLLOUT_STATUS_RUNNING:
            return None
        mode = "shadow" if reply.mode == training_pb2.ROLLOUT_MODE_SHADOW else "canary"
        return RolloutInfo(id=reply.id, candidate=int(reply.candidate_version), baseline=int(reply.baseline_version),
                           mode=mode, percent=int(reply.canary_percent) if mode == "canary" else 0)

    async def close(self) -> None:
        await self.channel.close()


class RegistryUnavailable(Exception):
    """The registry could not be asked."""
