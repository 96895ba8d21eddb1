"""A Redis client whose connection pool waits instead of failing (docs/reliability.md).

redis-py's default asyncio pool holds at most 100 connections and raises MaxConnectionsError at
once for the 101st concurrent command, although Redis itself is fine: a burst of 200 concurrent
uploads got ~half of them refused as "revocation store unreachable". Here a command that finds
every connection in use waits up to `pool_timeout_s` for one to come back (a few Redis round
trips: ~ms); only if none does within that bound it fails with `PoolExhausted`, an internal limit
that callers report as "busy, retry" (RESOURCE_EXHAUSTED / 429), never as a Redis outage.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import MaxConnectionsError

DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_POOL_TIMEOUT_S = 2.0
# A command that fails on a broken connection (one Redis closed: it restarted) is sent again on a
# fresh one, at most this often, 10-100 ms apart: stale pooled connections heal, while a Redis
# that is down still fails in milliseconds (redis-py's own default, 10 retries up to 1 s apart,
# would hold every request for seconds; with no retry at all, requests failed 503 after a Redis
# restart: bench/reliability soak).
DEFAULT_RETRIES = 2


class PoolExhausted(MaxConnectionsError):
    """Every pooled connection stayed in use for the whole wait: this process is overloaded,
    Redis may be perfectly healthy. A RedisError (ConnectionError), so code that already treats
    Redis errors as "fail open" (the rate limiter) or "fail closed" keeps doing so."""


class WaitingConnectionPool(aioredis.BlockingConnectionPool):
    """BlockingConnectionPool whose exhausted wait raises PoolExhausted (redis-py raises a plain
    ConnectionError("No connection available."), indistinguishable from Redis being down)."""

    async def get_connection(self, command_name=None, *keys, **options):
        try:
            return await super().get_connection()
        except aioredis.ConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError) and not isinstance(exc, PoolExhausted):
                raise PoolExhausted(
                    f"no Redis connection free within {self.timeout} s ({self.max_connections} in use)"
                ) from None
            raise


def connect(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
    socket_timeout: float | None = 5.0,
    socket_connect_timeout: float | None = 2.0,
    retries: int = DEFAULT_RETRIES,
) -> aioredis.Redis:
    """An asyncio Redis client on a WaitingConnectionPool (the client owns and closes the pool)."""
    pool = WaitingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_s,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries),
    )
    return aioredis.Redis.from_pool(pool)
