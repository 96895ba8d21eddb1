"""Idempotency-Key: a retried POST returns the first answer (stored in Redis, scoped by organization)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from hemovision_gateway.context import GatewayContext
from hemovision_gateway.errors import ApiError

_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _VALID.match(key):
        raise ApiError(422, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-200 characters of letters, digits, '.', '_', ':' or '-'")
    return key


def _redis_key(scope: str, org: str, user: str, key: str) -> str:
    owner = org or f"user:{user}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"hv:gw:idem:{scope}:{owner}:{digest}"


async def replay(ctx: GatewayContext, scope: str, org: str, user: str, key: str | None) -> JSONResponse | None:
    """The stored answer for this key, or None."""
    if not key:
        return None
    try:
        raw = await ctx.redis.get(_redis_key(scope, org, user, key))
    except RedisError:
        return None
    if not raw:
        return None
    stored = json.loads(raw)
    return JSONResponse(stored["body"], status_code=stored["status"], headers={"Idempotent-Replayed": "true"})


async def remember(ctx: GatewayContext, scope: str, org: str, user: str, key: str | None, status: int,
                   body: Any) -> None:
    if not key:
        return
    try:
        await ctx.redis.set(_redis_key(scope, org, user, key), json.dumps({"status": status, "body": body}),
                            ex=ctx.settings.idempotency_ttl_s)
    except RedisError:
        pass
