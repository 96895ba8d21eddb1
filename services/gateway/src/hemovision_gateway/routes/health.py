"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hemovision_gateway.errors import error_body
from hemovision_gateway.schemas import Alive, NotReady, Ready
from hemovision_gateway.security import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Alive:
    """The process is alive."""
    return Alive(status="ok")


@router.get("/readyz", response_model=Ready,
            responses={503: {"model": NotReady, "description": "a dependency is down or no model is loaded"}})
async def readyz(ctx: Ctx) -> Ready | JSONResponse:
    """Every dependency answers grpc.health SERVING (inference only with a loaded model) and Redis answers."""
    deps = await ctx.clients.health()
    try:
        deps["redis"] = "SERVING" if await ctx.redis.ping() else "NOT_SERVING"
    except Exception as exc:  # noqa: BLE001
        deps["redis"] = type(exc).__name__
    down = sorted(name for name, state in deps.items() if state != "SERVING")
    if down:
        return JSONResponse(
            {**error_body("not_ready", f"not ready: {', '.join(down)}"), "dependencies": deps},
            status_code=503, headers={"Retry-After": "5"})
    return Ready(status="ready", dependencies=deps)
