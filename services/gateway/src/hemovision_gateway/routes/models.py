"""Model versions (list, compare, activate / roll back) and training jobs (start, watch, cancel)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

import grpc
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from hemovision.training.v1 import training_pb2

from hemovision_gateway.clients import bearer
from hemovision_gateway.errors import api_error_from_grpc
from hemovision_gateway.query_params import INT32_MAX, MAX_VERSION, Version
from hemovision_gateway.schemas import ModelVersion, ModelVersionList, TrainingJob, TrainingJobList
from hemovision_gateway.security import Ctx, CurrentUser, ModelAdmin

router = APIRouter(prefix="/api/v1", tags=["models"])
DEFAULT_MODEL = "hemovision"

MODEL_EXAMPLE = {"name": "hemovision", "version": 2, "status": "active",
                 "metrics": {"accuracy": 0.912, "macro_f1": 0.903, "ece": 0.021}}


@router.get("/models", responses={200: {"content": {"application/json": {"example": {"items": [MODEL_EXAMPLE]}}}}})
async def list_models(user: CurrentUser, ctx: Ctx,
                      name: Annotated[str, Query(max_length=100)] = "") -> ModelVersionList:
    """Every registered model version with its metrics (any signed-in user)."""
    reply = await ctx.clients.training.ListModelVersions(
        training_pb2.ListModelVersionsRequest(model_name=name), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return ModelVersionList(items=[ModelVersion.from_pb(v) for v in reply.versions])


@router.get("/models/{version}", responses={200: {"content": {"application/json": {"example": MODEL_EXAMPLE}}}})
async def get_model(version: Version, user: CurrentUser, ctx: Ctx,
                    name: Annotated[str, Query(max_length=100)] = DEFAULT_MODEL) -> ModelVersion:
    v = await ctx.clients.training.GetModelVersion(
        training_pb2.GetModelVersionRequest(model_name=name, version=version), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return ModelVersion.from_pb(v)


class ActivateBody(BaseModel):
    name: str = Field(default=DEFAULT_MODEL, max_length=100)
    force: bool = Field(default=False, description="platform_admin only: skip the quality gate")
    reason: str = Field(default="", max_length=500, examples=["roll back: v3 drifts on eosinophils"])


@router.post("/models/{version}/activate")
async def activate_model(version: Version, user: ModelAdmin, ctx: Ctx, body: ActivateBody | None = None) -> ModelVersion:
    """Makes a version the active one (also how to roll back). ml_engineer or platform_admin."""
    body = body or ActivateBody()
    v = await ctx.clients.training.ActivateModelVersion(
        training_pb2.ActivateModelVersionRequest(model_name=body.name, version=version, force=body.force,
                                                 reason=body.reason),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return ModelVersion.from_pb(v)


class DeprecateBody(BaseModel):
    name: str = Field(default=DEFAULT_MODEL, max_length=100)
    reason: str = Field(min_length=1, max_length=500, examples=["mislabelled eosinophils in its training data"])


class RestoreBody(BaseModel):
    name: str = Field(default=DEFAULT_MODEL, max_length=100)
    reason: str = Field(default="", max_length=500)


@router.post("/models/{version}/deprecate")
async def deprecate_model(version: Version, body: DeprecateBody, user: ModelAdmin, ctx: Ctx) -> ModelVersion:
    """Retires a version from use: it cannot be activated or rolled back to until restored (409
    for the active version: activate another one first). ml_engineer or platform_admin; audited."""
    v = await ctx.clients.training.DeprecateModelVersion(
        training_pb2.DeprecateModelVersionRequest(model_name=body.name, version=version, reason=body.reason),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return ModelVersion.from_pb(v)


@router.post("/models/{version}/restore")
async def restore_model(version: Version, user: ModelAdmin, ctx: Ctx, body: RestoreBody | None = None) -> ModelVersion:
    """Lifts a deprecation. ml_engineer or platform_admin; audited."""
    body = body or RestoreBody()
    v = await ctx.clients.training.DeprecateModelVersion(
        training_pb2.DeprecateModelVersionRequest(model_name=body.name, version=version, reason=body.reason,
                                                  restore=True),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return ModelVersion.from_pb(v)


class TrainingBody(BaseModel):
    data_dir: str = Field(default="", max_length=500, description="required: an ImageFolder directory with splits.csv on the training host (empty is refused with 422)")
    model_name: str = Field(default=DEFAULT_MODEL, max_length=100)
    epochs: int = Field(default=0, ge=0, le=1000)  # every int bounded to its protobuf field (query_params)
    batch_size: int = Field(default=0, ge=0, le=4096)
    input_size: int = Field(default=0, ge=0, le=1024)
    seed: int = Field(default=0, ge=-INT32_MAX - 1, le=INT32_MAX)
    limit_per_class: int = Field(default=0, ge=0, le=INT32_MAX)
    learning_rate: float = Field(default=0.0, ge=0.0, le=10.0)
    auto_activate: bool = False
    parent_version: int = Field(default=0, ge=0, le=MAX_VERSION)


@router.post("/training-jobs", status_code=201)
async def start_training(body: TrainingBody, user: ModelAdmin, ctx: Ctx) -> TrainingJob:
    job = await ctx.clients.training.StartTrainingJob(
        training_pb2.StartTrainingJobRequest(config=training_pb2.TrainingConfig(**body.model_dump())),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return TrainingJob.from_pb(job)


@router.get("/training-jobs")
async def list_training(user: ModelAdmin, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> TrainingJobList:
    reply = await ctx.clients.training.ListTrainingJobs(training_pb2.ListTrainingJobsRequest(limit=limit),
                                                        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return TrainingJobList(items=[TrainingJob.from_pb(j) for j in reply.jobs])


@router.get("/training-jobs/{job_id}")
async def get_training(job_id: str, user: ModelAdmin, ctx: Ctx) -> TrainingJob:
    job = await ctx.clients.training.GetTrainingJob(training_pb2.GetTrainingJobRequest(id=job_id),
                                                    metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return TrainingJob.from_pb(job)


@router.post("/training-jobs/{job_id}/cancel")
async def cancel_training(job_id: str, user: ModelAdmin, ctx: Ctx) -> TrainingJob:
    job = await ctx.clients.training.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(id=job_id),
                                                       metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return TrainingJob.from_pb(job)


def sse(event: str, data: dict | TrainingJob) -> str:
    if isinstance(data, TrainingJob):
        data = data.model_dump(mode="json")
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.get("/training-jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def watch_training(job_id: str, user: ModelAdmin, ctx: Ctx) -> StreamingResponse:
    """Server-sent events: `progress` with the job on every change, `done` when it ends."""
    first = await ctx.clients.training.GetTrainingJob(training_pb2.GetTrainingJobRequest(id=job_id),
                                                      metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    finished = {training_pb2.JOB_STATUS_SUCCEEDED, training_pb2.JOB_STATUS_FAILED, training_pb2.JOB_STATUS_CANCELLED}

    async def events() -> AsyncIterator[str]:
        yield sse("progress", TrainingJob.from_pb(first))
        if first.status in finished:
            yield sse("done", TrainingJob.from_pb(first))
            return
        call = ctx.clients.training.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(id=job_id),
                                                     metadata=bearer(user.token), timeout=6 * 3600)
        last = first
        try:
            async for job in call:
                last = job
                yield sse("progress", TrainingJob.from_pb(job))
                if job.status in finished:
                    break
        except grpc.aio.AioRpcError as exc:
            err = api_error_from_grpc(exc)
            yield sse("error", {"code": err.code, "message": err.message})
            return
        except asyncio.CancelledError:
            call.cancel()
            raise
        yield sse("done", TrainingJob.from_pb(last))

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
