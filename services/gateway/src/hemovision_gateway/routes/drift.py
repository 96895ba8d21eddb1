"""Drift: how the caller's organization's recent cells compare with what its model version was
checked on (docs/operations.md "Drift"). History computes it (it owns the cells); the gateway only
forwards the caller's token, so the scoping is history's: a member sees its own organization with
the histograms, platform staff (platform_admin, ml_engineer) every organization's scores only."""

from __future__ import annotations

from fastapi import APIRouter
from hemovision.history.v1 import history_pb2

from hemovision_gateway.clients import bearer
from hemovision_gateway.schemas.drift import DriftReport
from hemovision_gateway.security import Ctx, CurrentUser

router = APIRouter(prefix="/api/v1", tags=["drift"])


@router.get("/drift")
async def get_drift(user: CurrentUser, ctx: Ctx) -> DriftReport:
    """The drift of the last 7 days' cells (at most 5,000 per organization) per model version: a
    score per component (population stability index against the version's PBC val reference) and
    a status: ok (< 0.10), watch (< 0.25), drifting, or too_few_cells (< 200 cells) / no_reference.
    403 for a caller with neither an organization nor a platform role."""
    reply = await ctx.clients.history.GetDrift(history_pb2.GetDriftRequest(), metadata=bearer(user.token),
                                               timeout=ctx.settings.rpc_timeout_s)
    return DriftReport.from_pb(reply)
