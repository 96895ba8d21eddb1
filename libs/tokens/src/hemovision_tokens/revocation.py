"""Revocation records in Redis (written by auth, read by every verifier).

    hv:revoked:jti:<jti>       "1", TTL = the token's remaining lifetime
    hv:revoked:user:<user_id>  unix time (float); the user's tokens issued before it are rejected
"""

from __future__ import annotations

import inspect
import time
from typing import Any

JTI_PREFIX = "hv:revoked:jti:"
USER_PREFIX = "hv:revoked:user:"
# How long a user revocation mark is kept: longer than any access token lives.
USER_MARK_TTL_S = 7 * 24 * 3600


def jti_key(jti: str) -> str:
    return f"{JTI_PREFIX}{jti}"


def user_key(user_id: str) -> str:
    return f"{USER_PREFIX}{user_id}"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def revoke_jti(redis: Any, jti: str, ttl: float) -> None:
    """Marks one token revoked until it would have expired anyway (sync or asyncio Redis client)."""
    seconds = max(1, int(ttl) + 1)
    await _maybe_await(redis.set(jti_key(jti), "1", ex=seconds))


async def revoke_user_tokens(redis: Any, user_id: str, at: float | None = None) -> float:
    """Rejects every token of `user_id` issued before `at` (default: now). Returns the mark."""
    mark = time.time() if at is None else float(at)
    await _maybe_await(redis.set(user_key(user_id), repr(mark), ex=USER_MARK_TTL_S))
    return mark
