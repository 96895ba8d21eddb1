""""Adapt to our lab": fine-tune the platform's model on the organization's reviewed cells
(start, watch by polling, cancel), and which version serves the organization (rollback).

The training service owns every decision (who may, >= 20 reviewed cells, the gate, scoping to the
caller's organization); the gateway checks the role early for a clear 403 and maps the service's
statuses through errors.GRPC_TO_HTTP (409 with its message, 404 for another organization's id)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from hemovision.training.v1 import training_pb2

from hemovision_gateway.clients import bearer
from hemovision_gateway.errors import ErrorBody
from hemovision_gateway.schemas import Adaptation, AdaptationList, OrganizationModel
from hemovision_gateway.security import AdaptAdmin, Ctx, CurrentUser

router = APIRouter(prefix="/api/v1", tags=["adaptation"])
DEFAULT_MODEL = "hemovision"

ModelName = Annotated[str, Query(max_length=100, description="model name")]

CONFLICT = {409: {"model": ErrorBody, "description": "refused by the service; the message says why "
                  "(e.g. fewer than 20 reviewed cells, nothing to roll back, already finished)"}}


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
    return Adaptation.from_pb(a)


@router.get("/adaptations")
async def list_adaptations(user: CurrentUser, ctx: Ctx,
                           limit: Annotated[int, Query(ge=1, le=200)] = 50) -> AdaptationList:
    """The organization's adaptations, newest first."""
    reply = await ctx.clients.training.ListAdaptations(
        training_pb2.ListAdaptationsRequest(limit=limit), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return AdaptationList(items=[Adaptation.from_pb(a) for a in reply.adaptations])


@router.get("/adaptations/{adaptation_id}")
async def get_adaptation(adaptation_id: str, user: CurrentUser, ctx: Ctx) -> Adaptation:
    """One adaptation: progress, the before/after figures, the gate's reasons. 404 for another
    organization's id."""
    a = await ctx.clients.training.GetAdaptation(
        training_pb2.GetAdaptationRequest(id=adaptation_id), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return Adaptation.from_pb(a)


@router.post("/adaptations/{adaptation_id}/cancel", responses=CONFLICT)
async def cancel_adaptation(adaptation_id: str, user: AdaptAdmin, ctx: Ctx) -> Adaptation:
    """Cancels a queued or running adaptation; nothing changes for the organization."""
    a = await ctx.clients.training.CancelAdaptation(
        training_pb2.CancelAdaptationRequest(id=adaptation_id), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return Adaptation.from_pb(a)


@router.get("/organization/model")
async def organization_model(user: CurrentUser, ctx: Ctx, name: ModelName = DEFAULT_MODEL) -> OrganizationModel:
    """Which version serves the caller's organization: its adapted one, else the platform's."""
    m = await ctx.clients.training.GetOrganizationModel(
        training_pb2.GetOrganizationModelRequest(model_name=name), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return OrganizationModel.from_pb(m)


@router.post("/organization/model/rollback", responses=CONFLICT)
async def rollback_organization_model(user: AdaptAdmin, ctx: Ctx,
                                      body: RollbackBody | None = None) -> OrganizationModel:
    """Puts the organization back on the version it used before its current adapted one (an
    earlier adapted version, or the platform's). 409 when there is nothing to roll back."""
    body = body or RollbackBody()
    m = await ctx.clients.training.RollbackOrganizationModel(
        training_pb2.RollbackOrganizationModelRequest(model_name=body.model_name), metadata=bearer(user.token),
        timeout=ctx.settings.rpc_timeout_s)
    return OrganizationModel.from_pb(m)
