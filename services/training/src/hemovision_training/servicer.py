"""TrainingServiceServicer: protobuf <-> domain objects, role checks, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from hemovision.training.v1 import training_pb2, training_pb2_grpc
from hemovision_contracts import ADAPTATION_ROLES, PLATFORM_ROLES
from hemovision_tokens import current_principal, require_role
from hemovision_training import repository as repo
from hemovision_training.adaptation import AdaptationService, OrganizationModel
from hemovision_training.registry import Actor
from hemovision_training.rollouts import RolloutService, RolloutView
from hemovision_training.service import TrainingRequest, TrainingService

JOB_STATUS = {
    repo.QUEUED: training_pb2.JOB_STATUS_QUEUED,
    repo.RUNNING: training_pb2.JOB_STATUS_RUNNING,
    repo.SUCCEEDED: training_pb2.JOB_STATUS_SUCCEEDED,
    repo.FAILED: training_pb2.JOB_STATUS_FAILED,
    repo.CANCELLED: training_pb2.JOB_STATUS_CANCELLED,
}
VERSION_STATUS = {
    repo.REGISTERED: training_pb2.VERSION_STATUS_REGISTERED,
    repo.ACTIVE: training_pb2.VERSION_STATUS_ACTIVE,
    repo.RETIRED: training_pb2.VERSION_STATUS_RETIRED,
}
ADAPTATION_STATUS = {
    repo.QUEUED: training_pb2.ADAPTATION_STATUS_QUEUED,
    repo.RUNNING: training_pb2.ADAPTATION_STATUS_RUNNING,
    repo.SUCCEEDED: training_pb2.ADAPTATION_STATUS_SUCCEEDED,
    repo.REJECTED: training_pb2.ADAPTATION_STATUS_REJECTED,
    repo.FAILED: training_pb2.ADAPTATION_STATUS_FAILED,
    repo.CANCELLED: training_pb2.ADAPTATION_STATUS_CANCELLED,
}


ROLLOUT_MODE = {"canary": training_pb2.ROLLOUT_MODE_CANARY, "shadow": training_pb2.ROLLOUT_MODE_SHADOW}
ROLLOUT_MODE_NAME = {v: k for k, v in ROLLOUT_MODE.items()}
ROLLOUT_STATUS = {
    "running": training_pb2.ROLLOUT_STATUS_RUNNING,
    "promoted": training_pb2.ROLLOUT_STATUS_PROMOTED,
    "aborted": training_pb2.ROLLOUT_STATUS_ABORTED,
}


def _ts(value) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _actor() -> Actor:
    p = current_principal()
    return Actor(user_id=p.user_id, organization_id=p.organization_id, role=p.role, token=p.token)


def job_to_proto(job: repo.Job) -> training_pb2.TrainingJob:
    c = job.config
    return training_pb2.TrainingJob(
        id=job.id,
        status=JOB_STATUS.get(job.status, training_pb2.JOB_STATUS_UNSPECIFIED),
        config=training_pb2.TrainingConfig(
            data_dir=c.get("data_dir", ""),
            model_name=c.get("model_name", ""),
            epochs=int(c.get("epochs", 0)),
            batch_size=int(c.get("batch_size", 0)),
            input_size=int(c.get("input_size", 0)),
            seed=int(c.get("seed", 0)),
            limit_per_class=int(c.get("limit_per_class", 0)),
            learning_rate=float(c.get("learning_rate", 0.0)),
            auto_activate=bool(c.get("auto_activate", False)),
            parent_version=int(c.get("parent_version", 0)),
        ),
        epoch=job.epoch,
        total_epochs=job.total_epochs,
        metrics=_scalars(job.metrics),
        model_version=job.model_version or 0,
        error=job.error,
        created_by=job.created_by,
        created_at=_ts(job.created_at),
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        phase=job.phase,
    )


def adaptation_to_proto(job: repo.Job) -> training_pb2.Adaptation:
    c, m = job.config, job.metrics or {}
    return training_pb2.Adaptation(
        id=job.id,
        organization_id=job.organization_id or "",
        status=ADAPTATION_STATUS.get(job.status, training_pb2.ADAPTATION_STATUS_UNSPECIFIED),
        model_name=job.model_name,
        base_version=int(c.get("base_version", 0)),
        previous_version=int(c.get("previous_version", 0)),
        model_version=job.model_version or 0,
        cells=int(c.get("cells", 0)),
        holdout_cells=int(m.get("holdout_cells", 0)),
        epoch=job.epoch,
        total_epochs=job.total_epochs,
        phase=job.phase,
        holdout_accuracy_before=float(m.get("holdout_accuracy_before", 0.0)),
        holdout_accuracy_after=float(m.get("holdout_accuracy_after", 0.0)),
        pbc_val_accuracy_before=float(m.get("pbc_val_accuracy_before", 0.0)),
        pbc_val_accuracy_after=float(m.get("pbc_val_accuracy_after", 0.0)),
        gate_reasons=[str(r) for r in m.get("gate_reasons", [])],
        error=job.error,
        created_by=job.created_by,
        created_at=_ts(job.created_at),
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
    )


def organization_model_to_proto(m: OrganizationModel) -> training_pb2.OrganizationModel:
    return training_pb2.OrganizationModel(organization_id=m.organization_id, model_name=m.model_name,
                                          version=m.version, adapted=m.adapted,
                                          platform_version=m.platform_version, stale=m.stale)


def version_to_proto(v: repo.ModelVersion) -> training_pb2.ModelVersion:
    cfg = struct_pb2.Struct()
    cfg.update({k: val for k, val in (v.training_config or {}).items()})
    return training_pb2.ModelVersion(
        name=v.name,
        version=v.version,
        path=v.path,
        status=VERSION_STATUS.get(v.status, training_pb2.VERSION_STATUS_UNSPECIFIED),
        metrics=_scalars(v.metrics),
        training_config=cfg,
        data_hash=v.data_hash,
        parent_version=v.parent_version or 0,
        created_by=v.created_by,
        created_at=_ts(v.created_at),
        activated_at=_ts(v.activated_at),
        job_id=v.job_id or "",
        was_active=v.was_active,
        organization_id=v.organization_id or "",
        stale=v.stale,
        deprecated=v.deprecated,
        deprecation_reason=v.deprecation_reason,
        deprecated_at=_ts(v.deprecated_at),
    )


def rollout_to_proto(view: RolloutView) -> training_pb2.Rollout:
    r = view.rollout
    msg = training_pb2.Rollout(
        id=r.id, model_name=r.name, candidate_version=r.candidate_version, baseline_version=r.baseline_version,
        mode=ROLLOUT_MODE.get(r.mode, training_pb2.ROLLOUT_MODE_UNSPECIFIED), canary_percent=r.canary_percent,
        status=ROLLOUT_STATUS.get(r.status, training_pb2.ROLLOUT_STATUS_UNSPECIFIED), started_by=r.started_by,
        started_at=_ts(r.started_at), start_reason=r.start_reason, ended_by=r.ended_by, ended_at=_ts(r.ended_at),
        end_reason=r.end_reason,
    )
    st = view.stats
    if st is not None:
        msg.stats.CopyFrom(training_pb2.RolloutStats(
            versions=[training_pb2.RolloutVersionStats(
                role=v.role, version=v.version, requests=v.requests, cells=v.cells,
                latency_p50_ms=v.p50_ms or 0.0, latency_p95_ms=v.p95_ms or 0.0) for v in st.versions],
            agree_cells=st.agree, compared_cells=st.compared, agreement_rate=st.agreement_rate or 0.0,
            shadow_dropped=st.shadow_dropped, shadow_skipped=st.shadow_skipped, shadow_failed=st.shadow_failed,
            available=st.available,
        ))
    return msg


class TrainingServiceServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, service: TrainingService, adaptations: AdaptationService, *,
                 revoke: Callable[[str], None] | None = None) -> None:
        self._service = service
        self._adaptations = adaptations
        self._revoke = revoke
        self._rollouts = RolloutService(service)

    async def StartTrainingJob(self, request, context):
        require_role(*PLATFORM_ROLES)
        c = request.config
        job = await self._service.start_job(
            _actor(),
            TrainingRequest(
                data_dir=c.data_dir,
                model_name=c.model_name,
                epochs=c.epochs,
                batch_size=c.batch_size,
                input_size=c.input_size,
                seed=c.seed,
                limit_per_class=c.limit_per_class,
                learning_rate=c.learning_rate,
                auto_activate=c.auto_activate,
                parent_version=c.parent_version,
            ),
        )
        return job_to_proto(job)

    async def GetTrainingJob(self, request, context):
        require_role(*PLATFORM_ROLES)
        return job_to_proto(await self._service.get_job(request.id, kind=repo.TRAINING))

    async def ListTrainingJobs(self, request, context):
        require_role(*PLATFORM_ROLES)
        jobs = await self._service.list_jobs(request.limit)
        return training_pb2.ListTrainingJobsResponse(jobs=[job_to_proto(j) for j in jobs])

    async def WatchTrainingJob(self, request, context):
        require_role(*PLATFORM_ROLES)
        async for job in self._service.watch_job(request.id):
            yield job_to_proto(job)

    async def CancelTrainingJob(self, request, context):
        require_role(*PLATFORM_ROLES)
        await self._service.get_job(request.id, kind=repo.TRAINING)  # adaptations are cancelled as such
        return job_to_proto(await self._service.cancel_job(_actor(), request.id, revoke=self._revoke))

    async def ListModelVersions(self, request, context):
        versions = await self._service.list_versions(_actor(), request.model_name)  # any signed-in user
        return training_pb2.ListModelVersionsResponse(versions=[version_to_proto(v) for v in versions])

    async def GetModelVersion(self, request, context):
        return version_to_proto(await self._service.get_version(_actor(), request.model_name, request.version))

    async def GetActiveModelVersion(self, request, context):
        # Public: inference replicas reconcile with it without a token.
        return version_to_proto(await self._service.get_active(request.model_name))

    async def ActivateModelVersion(self, request, context):
        require_role(*PLATFORM_ROLES)
        version = await self._service.activate(
            _actor(), request.model_name, request.version, force=request.force, reason=request.reason
        )
        return version_to_proto(version)

    async def DeprecateModelVersion(self, request, context):
        require_role(*PLATFORM_ROLES)
        version = await self._service.deprecate(
            _actor(), request.model_name, request.version, reason=request.reason, restore=request.restore
        )
        return version_to_proto(version)

    async def StartAdaptation(self, request, context):
        require_role(*ADAPTATION_ROLES)
        return adaptation_to_proto(await self._adaptations.start(_actor(), request.model_name))

    async def GetAdaptation(self, request, context):
        return adaptation_to_proto(await self._adaptations.get(_actor(), request.id))

    async def ListAdaptations(self, request, context):
        jobs = await self._adaptations.list(_actor(), request.limit)
        return training_pb2.ListAdaptationsResponse(adaptations=[adaptation_to_proto(j) for j in jobs])

    async def CancelAdaptation(self, request, context):
        require_role(*ADAPTATION_ROLES)
        return adaptation_to_proto(await self._adaptations.cancel(_actor(), request.id, revoke=self._revoke))

    async def GetOrganizationModel(self, request, context):
        return organization_model_to_proto(await self._adaptations.organization_model(_actor(), request.model_name))

    async def RollbackOrganizationModel(self, request, context):
        require_role(*ADAPTATION_ROLES)
        return organization_model_to_proto(await self._adaptations.rollback(_actor(), request.model_name))

    async def StartRollout(self, request, context):
        require_role(*PLATFORM_ROLES)
        view = await self._rollouts.start(
            _actor(), request.model_name, version=request.version,
            mode=ROLLOUT_MODE_NAME.get(request.mode, "unspecified"), canary_percent=request.canary_percent,
            reason=request.reason)
        return rollout_to_proto(view)

    async def GetRollout(self, request, context):
        # Public: inference replicas poll it without a token (like GetActiveModelVersion).
        return rollout_to_proto(await self._rollouts.get(request.model_name, with_stats=request.with_stats))

    async def PromoteRollout(self, request, context):
        require_role(*PLATFORM_ROLES)
        return rollout_to_proto(await self._rollouts.promote(_actor(), request.model_name, reason=request.reason))

    async def AbortRollout(self, request, context):
        require_role(*PLATFORM_ROLES)
        return rollout_to_proto(await self._rollouts.abort(_actor(), request.model_name, reason=request.reason))
