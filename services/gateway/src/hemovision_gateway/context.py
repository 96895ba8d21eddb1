"""What request handlers share: settings, gRPC clients, Redis, the token verifier."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from fastapi import Request

from hemovision_gateway.clients import Clients
from hemovision_gateway.pipeline import Coalescing
from hemovision_gateway.settings import Settings


@dataclass
class GatewayContext:
    settings: Settings
    clients: Clients
    redis: aioredis.Redis
    verifier: Any
    coalescing: Coalescing | None = None
    started_at: float = field(default_factory=time.time)


async def get_context(request: Request) -> GatewayContext:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
    # on every request for one attribute lookup
    return request.app.state.ctx
