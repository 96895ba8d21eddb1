"""Fakes behind the inference service's own interfaces (imported by conftest's sys.path entry)."""

from __future__ import annotations

import base64
import json

import grpc

from hemovision.training.v1 import training_pb2, training_pb2_grpc


class FakeRegistry:
    """A tiny TrainingService answering GetActiveModelVersion and GetOrganizationModel (for tests
    behind our interface). `organizations` maps an organization id to its active adapted version;
    the caller's organization is read from its bearer token's `org` claim (not verified here: the
    tests mint the tokens). `down = True` answers UNAVAILABLE to everything (an outage)."""

    def __init__(self, active: int | None = None, organizations: dict[str, int] | None = None) -> None:
        self.active = active
        self.rollout: training_pb2.Rollout | None = None  # GetRollout's answer (NOT_FOUND when None)
        self.organizations: dict[str, int] = dict(organizations or {})
        self.down = False
        self.org_calls: dict[str, int] = {}
        self.server = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        registry = self

        def organization(context) -> str:
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    payload = value.split(" ", 1)[1].split(".")[1]
                    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["org"]
            return ""

        class Servicer(training_pb2_grpc.TrainingServiceServicer):
            async def GetActiveModelVersion(self, request, context):
                if registry.down:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "registry down")
                if registry.active is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no active version")
                return training_pb2.ModelVersion(name=request.model_name or "hemovision", version=registry.active)

            async def GetRollout(self, request, context):
                if registry.down:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "registry down")
                if registry.rollout is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no rollout")
                return registry.rollout

            async def GetOrganizationModel(self, request, context):
                if registry.down:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "registry down")
                org = organization(context)
                if not org:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")
                registry.org_calls[org] = registry.org_calls.get(org, 0) + 1
                if registry.active is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no active version")
                adapted = registry.organizations.get(org)
                return training_pb2.OrganizationModel(
                    organization_id=org, model_name=request.model_name or "hemovision",
                    version=adapted or registry.active, adapted=adapted is not None,
                    platform_version=registry.active,
                )

        self.server = grpc.aio.server()
        training_pb2_grpc.add_TrainingServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()

    def start_rollout(self, candidate: int, *, shadow: bool = False, percent: int = 0) -> str:
        """Like StartRollout: a running rollout of `candidate` beside the active version."""
        import uuid

        self.rollout = training_pb2.Rollout(
            id=str(uuid.uuid4()), model_name="hemovision", candidate_version=candidate, baseline_version=self.active,
            mode=training_pb2.ROLLOUT_MODE_SHADOW if shadow else training_pb2.ROLLOUT_MODE_CANARY,
            canary_percent=0 if shadow else percent, status=training_pb2.ROLLOUT_STATUS_RUNNING)
        return self.rollout.id

    def end_rollout(self, *, promote: bool) -> None:
        """Like PromoteRollout (the candidate becomes active) or AbortRollout."""
        assert self.rollout is not None
        if promote:
            self.active = self.rollout.candidate_version
        self.rollout.status = (training_pb2.ROLLOUT_STATUS_PROMOTED if promote
                               else training_pb2.ROLLOUT_STATUS_ABORTED)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
