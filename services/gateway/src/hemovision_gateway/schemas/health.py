"""Liveness and readiness."""

from __future__ import annotations

from pydantic import Field

from hemovision_gateway.errors import ErrorDetail
from hemovision_gateway.schemas.common import ResponseModel


class Alive(ResponseModel):
    status: str = Field(examples=["ok"])


class Ready(ResponseModel):
    status: str = Field(examples=["ready"])
    dependencies: dict[str, str] = Field(
        examples=[{"auth": "SERVING", "inference": "SERVING", "redis": "SERVING"}],
        description="each peer's grpc.health state (or the error reaching it), and Redis")


class NotReady(ResponseModel):
    """503: the error plus each dependency's state."""

    error: ErrorDetail
    dependencies: dict[str, str]
