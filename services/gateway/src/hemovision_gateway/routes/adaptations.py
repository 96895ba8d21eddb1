""""Adapt to our lab": fine-tune the platform's model on the organization's reviewed cells
(start, watch by polling, cancel), and which version serves the organization (rollback).

The training service owns every decision (who may, >= 20 reviewed cells, the gate, scoping to the
caller's organization); the gateway checks the role early for a clear 403 and maps the service's
statuses through errors.GRPC_TO_HTTP (409 with its message, 404 for another organization's id)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from hemovision.training.v1 import training_pb2

from hemovision_gateway import views
from hemovision_gateway.clients import bearer
from hemovision_gateway.errors import ErrorBody
from hemovision_gateway.security import AdaptAdmin, Ctx, CurrentUser

router = APIRouter(prefix="/api/v1", tags=["adaptation"])
DEFAULT_MODEL = "hemovision"

AdaptationStatus = Literal["queued", "running", "succeeded", "rejected", "failed", "cancelled"]
ModelName = Annotated[str, Query(max_length=100, description="model name")]

CONFLICT = {409: {"model": ErrorBody, "description": "refused by the service; the message says why "
                  "(e.g. fewer than 20 reviewed cells, nothing to roll back, already finished)"}}


class AdaptationLinks(BaseModel):
    self: str
    cancel: str


class Adaptation(BaseModel):
    """One "adapt to our lab" run. Accuracies are fractions (0-1), null until measured."""

    id: str = Field(examples=["5f0c1d2e-7a43-4b1e-9c0a-3d2f1e0b9a87"])
    status: AdaptationStatus = Field(examples=["running"])
    finished: bool = Field(description="true once the status is final (succeeded, rejected, failed, cancelled)")
    organization_id: str
    model_name: str = Field(examples=["hemovision"])
    base_version: int | None = Field(description="the platform version it fine-tunes")
    previous_version: int | None = Field(description="the organization's version before; null = the platform's")
    model_version: int | None = Field(description="the version it produced (served only when succeeded)")
    cells: int = Field(description="reviewed cells used")
    holdout_cells: int = Field(description="of those, held back to check the result")
    epoch: int
    total_epochs: int
    progress: float = Field(ge=0, le=1, description="epoch / total_epochs")
    phase: str = Field(examples=["epoch 3/8"])
    holdout_accuracy_before: float | None = Field(description="held-back cells, the organization's current version")
    holdout_accuracy_after: float | None = Field(description="held-back cells, the adapted version")
    pbc_val_accuracy_before: float | None = Field(description="PBC validation split, current version")
    pbc_val_accuracy_after: float | None = Field(description="PBC validation split, adapted version")
    gate_reasons: list[str] = Field(description="why the gate refused it (rejected only)")
    error: str | None = Field(description="why it failed")
    created_by: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    links: AdaptationLinks


class AdaptationList(BaseModel):
    items: list[Adaptation]


class OrganizationModel(BaseModel):
    """The version that answers the caller's organization."""

    organization_id: str
    model_name: str = Field(examples=["hemovision"])
    version: int = Field(examples=[7], description="the version its requests go to")
    adapted: bool = Field(description="true when it is the organization's own adapted version")
    source: Literal["adapted", "platform"]
    platform_version: int = Field(examples=[2], description="the platform's active version")
    stale: bool = Field(description="the adapted version's base is no longer the platform's active version: "
                        "still served; adapt again to build on the new one")


class StartBody(BaseModel):
    model_name: str = Field(default=DEFAULT_MODEL, max_length=100)


class RollbackBody(BaseModel):
    model_name: str = Field(default=DEFAULT_MODEL, max_length=100)


@router.post("/adaptations", status_code=202, responses=CONFLICT)
async def start_adaptation(user: AdaptAdmin, ctx: Ctx, body: StartBody | None = None) -> Adaptation:
    """Queues an adaptation for the caller's organization (org_admin, ml_engineer, platform_admin).
    409 while the organization has fewer than 20 reviewed cells. Follow it with GET until `finished`."""
    body = body or StartBody()
    a = await ctx.clients.training.StartAdaptation(
        training_pb2.StartAdaptationRequest(model_name=body.model_name), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return Adaptation.model_validate(views.adaptation(a))


@router.get("/adaptations")
async def list_adaptations(user: CurrentUser, ctx: Ctx,
                           limit: Annotated[int, Query(ge=1, le=200)] = 50) -> AdaptationList:
    """The organization's adaptations, newest first."""
    reply = await ctx.clients.training.ListAdaptations(
        training_pb2.ListAdaptationsRequest(limit=limit), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return AdaptationList(items=[Adaptation.model_validate(views.adaptation(a)) for a in reply.adaptations])


@router.get("/adaptations/{adaptation_id}")
async def get_adaptation(adaptation_id: str, user: CurrentUser, ctx: Ctx) -> Adaptation:
    """One adaptation: progress, the before/after figures, the gate's reasons. 404 for another
    organization's id."""
    a = await ctx.clients.training.GetAdaptation(
        training_pb2.GetAdaptationRequest(id=adaptation_id), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return Adaptation.model_validate(views.adaptation(a))


@router.post("/adaptations/{adaptation_id}/cancel", responses=CONFLICT)
async def cancel_adaptation(adaptation_id: str, user: AdaptAdmin, ctx: Ctx) -> Adaptation:
    """Cancels a queued or running adaptation; nothing changes for the organization."""
    a = await ctx.clients.training.CancelAdaptation(
        training_pb2.CancelAdaptationRequest(id=adaptation_id), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return Adaptation.model_validate(views.adaptation(a))


@router.get("/organization/model")
async def organization_model(user: CurrentUser, ctx: Ctx, name: ModelName = DEFAULT_MODEL) -> OrganizationModel:
    """Which version serves the caller's organization: its adapted one, else the platform's."""
    m = await ctx.clients.training.GetOrganizationModel(
        training_pb2.GetOrganizationModelRequest(model_name=name), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return OrganizationModel.model_validate(views.organization_model(m))


@router.post("/organization/model/rollback", responses=CONFLICT)
async def rollback_organization_model(user: AdaptAdmin, ctx: Ctx,
                                      body: RollbackBody | None = None) -> OrganizationModel:
    """Puts the organization back on the version it used before its current adapted one (an
    earlier adapted version, or the platform's). 409 when there is nothing to roll back."""
    body = body or RollbackBody()
    m = await ctx.clients.training.RollbackOrganizationModel(
        training_pb2.RollbackOrganizationModelRequest(model_name=body.model_name), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return OrganizationModel.model_validate(views.organization_model(m))
