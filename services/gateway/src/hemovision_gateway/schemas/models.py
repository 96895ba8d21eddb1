"""Model versions and training jobs."""

from __future__ import annotations

from typing import Any, Literal

from google.protobuf.json_format import MessageToDict
from pydantic import Field

from hemovision.training.v1 import training_pb2

from hemovision_gateway.schemas.common import ResponseModel, rounded, timestamp

VersionStatus = Literal["registered", "active", "retired", "unknown"]
VERSION_STATUS: dict[int, VersionStatus] = {
    training_pb2.VERSION_STATUS_REGISTERED: "registered",
    training_pb2.VERSION_STATUS_ACTIVE: "active",
    training_pb2.VERSION_STATUS_RETIRED: "retired",
}
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "unknown"]
JOB_STATUS: dict[int, JobStatus] = {
    training_pb2.JOB_STATUS_QUEUED: "queued",
    training_pb2.JOB_STATUS_RUNNING: "running",
    training_pb2.JOB_STATUS_SUCCEEDED: "succeeded",
    training_pb2.JOB_STATUS_FAILED: "failed",
    training_pb2.JOB_STATUS_CANCELLED: "cancelled",
}


class ModelVersion(ResponseModel):
    """One registered model version with its metrics."""

    name: str = Field(examples=["hemovision"])
    version: int = Field(examples=[2])
    status: VersionStatus = Field(examples=["active"])
    metrics: dict[str, float] = Field(examples=[{"accuracy": 0.912, "macro_f1": 0.903, "ece": 0.021}])
    created_at: str | None
    activated_at: str | None
    created_by: str
    parent_version: int | None
    job_id: str | None = Field(description="the training job that produced it")
    data_hash: str
    was_active: bool
    organization_id: str | None = Field(description="set for an organization's adapted version")
    stale: bool
    deprecated: bool = Field(description="retired from use: not activated again until restored")
    deprecation_reason: str
    deprecated_at: str | None
    training_config: dict[str, Any] = Field(description="the training job's config (protobuf JSON names)")

    @classmethod
    def from_pb(cls, v: training_pb2.ModelVersion) -> ModelVersion:
        return cls(
            name=v.name,
            version=v.version,
            status=VERSION_STATUS.get(v.status, "unknown"),
            metrics=rounded(v.metrics),
            created_at=timestamp(v.created_at),
            activated_at=timestamp(v.activated_at),
            created_by=v.created_by,
            parent_version=v.parent_version or None,
            job_id=v.job_id or None,
            data_hash=v.data_hash,
            was_active=v.was_active,
            organization_id=v.organization_id or None,
            stale=v.stale,
            deprecated=v.deprecated,
            deprecation_reason=v.deprecation_reason,
            deprecated_at=timestamp(v.deprecated_at),
            training_config=MessageToDict(v.training_config) if v.HasField("training_config") else {},
        )


class ModelVersionList(ResponseModel):
    items: list[ModelVersion]


class TrainingConfig(ResponseModel):
    data_dir: str
    model_name: str
    epochs: int
    batch_size: int
    input_size: int
    seed: int
    limit_per_class: int
    learning_rate: float
    auto_activate: bool
    parent_version: int

    @classmethod
    def from_pb(cls, c: training_pb2.TrainingConfig) -> TrainingConfig:
        return cls(data_dir=c.data_dir, model_name=c.model_name, epochs=c.epochs, batch_size=c.batch_size,
                   input_size=c.input_size, seed=c.seed, limit_per_class=c.limit_per_class,
                   learning_rate=round(float(c.learning_rate), 8), auto_activate=c.auto_activate,
                   parent_version=c.parent_version)


class TrainingJob(ResponseModel):
    id: str
    status: JobStatus = Field(examples=["running"])
    phase: str
    epoch: int
    total_epochs: int
    metrics: dict[str, float]
    model_version: int | None = Field(description="the version it registered")
    error: str | None
    created_by: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    config: TrainingConfig

    @classmethod
    def from_pb(cls, j: training_pb2.TrainingJob) -> TrainingJob:
        return cls(
            id=j.id,
            status=JOB_STATUS.get(j.status, "unknown"),
            phase=j.phase,
            epoch=j.epoch,
            total_epochs=j.total_epochs,
            metrics=rounded(j.metrics),
            model_version=j.model_version or None,
            error=j.error or None,
            created_by=j.created_by,
            created_at=timestamp(j.created_at),
            started_at=timestamp(j.started_at),
            finished_at=timestamp(j.finished_at),
            config=TrainingConfig.from_pb(j.config),
        )


class TrainingJobList(ResponseModel):
    items: list[TrainingJob]
