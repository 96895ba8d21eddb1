"""Safe rollouts (canary / shadow) of a candidate model version: start, watch live, promote, abort."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator

from hemovision.training.v1 import training_pb2

from hemovision_gateway.clients import bearer
from hemovision_gateway.query_params import MAX_VERSION
from hemovision_gateway.schemas.rollouts import ROLLOUT_MODE_PB, Rollout
from hemovision_gateway.security import Ctx, CurrentUser, ModelAdmin

router = APIRouter(prefix="/api/v1", tags=["models"])
DEFAULT_MODEL = "hemovision"


class StartRolloutBody(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION, examples=[3],
                         description="a registered platform version, not active, not deprecated")
    mode: Literal["canary", "shadow"] = Field(examples=["canary"])
    canary_percent: int | None = Field(default=None, ge=1, le=50, examples=[10],
                                       description="canary: 1..50 percent of platform-routed requests; omit for shadow")
    reason: str = Field(default="", max_length=500, examples=["v3: better eosinophil recall"])
    name: str = Field(default=DEFAULT_MODEL, max_length=100)

    @model_validator(mode="after")
    def _percent_matches_mode(self) -> StartRolloutBody:
        if self.mode == "canary" and self.canary_percent is None:
            raise ValueError("a canary needs canary_percent (1..50)")
        if self.mode == "shadow" and self.canary_percent is not None:
            raise ValueError("a shadow takes no canary_percent")
        return self


class EndRolloutBody(BaseModel):
    reason: str = Field(default="", max_length=500)
    name: str = Field(default=DEFAULT_MODEL, max_length=100)


@router.post("/rollouts", status_code=201)
async def start_rollout(body: StartRolloutBody, user: ModelAdmin, ctx: Ctx) -> Rollout:
    """Starts a canary or shadow rollout beside the active version (409 while another is running,
    or for a deprecated or active version). ml_engineer or platform_admin; audited."""
    r = await ctx.clients.training.StartRollout(
        training_pb2.StartRolloutRequest(model_name=body.name, version=body.version, mode=ROLLOUT_MODE_PB[body.mode],
                                         canary_percent=body.canary_percent or 0, reason=body.reason),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Rollout.from_pb(r)


@router.get("/rollouts/current")
async def current_rollout(user: CurrentUser, ctx: Ctx,
                          name: Annotated[str, Query(max_length=100)] = DEFAULT_MODEL) -> Rollout:
    """The running rollout (else the most recent one; 404 when there never was one) with live
    statistics: requests, cells and p50/p95 latency per version, shadow agreement. Any signed-in user."""
    r = await ctx.clients.training.GetRollout(training_pb2.GetRolloutRequest(model_name=name, with_stats=True),
                                              metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Rollout.from_pb(r)


@router.post("/rollouts/current/promote")
async def promote_rollout(user: ModelAdmin, ctx: Ctx, body: EndRolloutBody | None = None) -> Rollout:
    """Activates the candidate through the quality gate (409 with the numbers when refused; the
    rollout keeps running). ml_engineer or platform_admin; audited."""
    body = body or EndRolloutBody()
    r = await ctx.clients.training.PromoteRollout(
        training_pb2.PromoteRolloutRequest(model_name=body.name, reason=body.reason),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Rollout.from_pb(r)


@router.post("/rollouts/current/abort")
async def abort_rollout(user: ModelAdmin, ctx: Ctx, body: EndRolloutBody | None = None) -> Rollout:
    """Ends the running rollout; the active version serves everything again. ml_engineer or
    platform_admin; audited."""
    body = body or EndRolloutBody()
    r = await ctx.clients.training.AbortRollout(
        training_pb2.AbortRolloutRequest(model_name=body.name, reason=body.reason),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Rollout.from_pb(r)
