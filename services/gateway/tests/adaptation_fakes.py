"""The training service's "adapt to our lab" RPCs, faked like gateway_fakes' other services:
scoped by the verified caller's organization, with the real service's refusals (role, < 20
reviewed cells, nothing to roll back). Every GetAdaptation advances a run one step
(queued -> epoch 1..3 -> the outcome in World.adapt_outcome), so polling clients see progress."""

from __future__ import annotations

import uuid

import grpc

from hemovision.training.v1 import training_pb2
from hemovision_contracts import ADAPTATION_ROLES

ADAPT_ROLES = ADAPTATION_ROLES  # as the training service; a test narrows it to play a stricter service
MIN_REVIEWED = 20
EPOCHS = 3
OPEN = (training_pb2.ADAPTATION_STATUS_QUEUED, training_pb2.ADAPTATION_STATUS_RUNNING)


class AdaptationFakes:
    """Mixed into FakeTraining, which provides `w` (the World), `versions` and `_caller`."""

    def _platform_version(self) -> int:
        return next(v.version for v in self.versions.values() if v.status == training_pb2.VERSION_STATUS_ACTIVE)

    def _org_model(self, org: str, name: str) -> training_pb2.OrganizationModel:
        stack = self.w.org_versions.get(org, [])
        platform = self._platform_version()
        return training_pb2.OrganizationModel(organization_id=org, model_name=name or "hemovision",
                                              version=stack[-1] if stack else platform, adapted=bool(stack),
                                              platform_version=platform, stale=bool(stack) and org in self.w.stale_orgs)

    async def _member(self, context, *, manage: bool = False):
        p = await self._caller(context)
        if manage and p.role not in ADAPT_ROLES:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "adaptation needs org_admin, ml_engineer or "
                                                                   "platform_admin")
        if not p.organization_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "adaptation is per organization: sign in "
                                                                     "as a member of one")
        return p

    async def _own(self, context, adaptation_id: str) -> training_pb2.Adaptation:
        p = await self._member(context)
        a = self.w.adaptations.get(adaptation_id)
        if a is None or a.organization_id != p.organization_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "adaptation not found")
        return a

    async def StartAdaptation(self, request, context):
        p = await self._member(context, manage=True)
        reviewed = sum(1 for x in self.w.predictions.values()
                       if x.organization_id == p.organization_id and x.reviewed_label)
        if reviewed < MIN_REVIEWED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"your organization has {reviewed} reviewed cells; adapting needs at least "
                                f"{MIN_REVIEWED}")
        if any(a.organization_id == p.organization_id and a.status in OPEN for a in self.w.adaptations.values()):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "an adaptation is already running")
        current = self._org_model(p.organization_id, request.model_name)
        a = training_pb2.Adaptation(
            id=str(uuid.uuid4()), organization_id=p.organization_id, status=training_pb2.ADAPTATION_STATUS_QUEUED,
            model_name=request.model_name or "hemovision", base_version=current.platform_version,
            previous_version=current.version if current.adapted else 0, cells=reviewed,
            holdout_cells=max(10, reviewed // 4), total_epochs=EPOCHS, phase="queued", created_by=p.user_id)
        a.created_at.GetCurrentTime()
        self.w.adaptations[a.id] = a
        return a

    def _advance(self, a: training_pb2.Adaptation) -> None:
        if a.status == training_pb2.ADAPTATION_STATUS_QUEUED:
            a.status = training_pb2.ADAPTATION_STATUS_RUNNING
            a.started_at.GetCurrentTime()
        elif a.status != training_pb2.ADAPTATION_STATUS_RUNNING:
            return
        if a.epoch < a.total_epochs:
            a.epoch += 1
            a.phase = f"epoch {a.epoch}/{a.total_epochs}"
            return
        outcome = self.w.adapt_outcome
        a.finished_at.GetCurrentTime()
        a.phase = "done"
        if outcome == "failed":
            a.status = training_pb2.ADAPTATION_STATUS_FAILED
            a.error = "the training worker was lost"
            return
        a.holdout_accuracy_before, a.pbc_val_accuracy_before = 0.55, 0.988
        a.model_version = 100 + len(self.w.adaptations) + sum(map(len, self.w.org_versions.values()))
        if outcome == "rejected":
            a.status = training_pb2.ADAPTATION_STATUS_REJECTED
            a.holdout_accuracy_after, a.pbc_val_accuracy_after = 0.55, 0.962
            a.gate_reasons.extend(["held-back accuracy 55.0 % does not beat the current 55.0 %",
                                   "PBC val accuracy falls 2.6 points (more than 1)"])
        else:
            a.status = training_pb2.ADAPTATION_STATUS_SUCCEEDED
            a.holdout_accuracy_after, a.pbc_val_accuracy_after = 0.85, 0.984
            self.w.org_versions.setdefault(a.organization_id, []).append(a.model_version)
            self.w.stale_orgs.discard(a.organization_id)

    async def GetAdaptation(self, request, context):
        a = await self._own(context, request.id)
        self._advance(a)
        return a

    async def ListAdaptations(self, request, context):
        p = await self._member(context)
        mine = [a for a in self.w.adaptations.values() if a.organization_id == p.organization_id]
        return training_pb2.ListAdaptationsResponse(adaptations=mine[::-1][: request.limit or 50])

    async def CancelAdaptation(self, request, context):
        await self._member(context, manage=True)
        a = await self._own(context, request.id)
        if a.status not in OPEN:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the adaptation has already finished")
        a.status = training_pb2.ADAPTATION_STATUS_CANCELLED
        a.phase = "cancelled"
        a.finished_at.GetCurrentTime()
        return a

    async def GetOrganizationModel(self, request, context):
        p = await self._member(context)
        return self._org_model(p.organization_id, request.model_name)

    async def RollbackOrganizationModel(self, request, context):
        p = await self._member(context, manage=True)
        stack = self.w.org_versions.get(p.organization_id, [])
        if not stack:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "your organization has no adapted version to roll back")
        stack.pop()
        return self._org_model(p.organization_id, request.model_name)
