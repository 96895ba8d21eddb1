"""The Redis pool bug (issue 20): a burst of more concurrent revocation lookups than the pool holds
used to fail about half of them as "revocation store unreachable" (redis-py's default pool raises
MaxConnectionsError at its 101st connection, Redis itself being fine). Real Redis throughout."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError

from hemovision_grpc_server import ResourceExhausted, Unavailable
from hemovision_testkit.tokens import TokenFactory
from hemovision_tokens import redis_pool

BURST = 400  # 4x the default pool size


async def test_redis_py_default_pool_refuses_a_burst(redis_url):
    """The cause, pinned: without the waiting pool the same burst fails (so the next test can fail)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        results = await asyncio.gather(*[client.mget("a", "b") for _ in range(BURST)], return_exceptions=True)
    finally:
        await client.aclose()
    assert any(isinstance(r, MaxConnectionsError) for r in results)


async def test_burst_beyond_the_pool_size_all_verified(redis_url):
    factory = TokenFactory()
    verifier = factory.verifier(redis_url=redis_url)  # the pool every service's verifier builds (100)
    tokens = [factory.issue() for _ in range(BURST)]
    try:
        for _ in range(3):  # without a caller's proof every verify() looks the token up in Redis
            results = await asyncio.gather(*[verifier.verify(t) for t in tokens], return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, f"{len(failures)} of {BURST} failed, e.g. {failures[0]!r}"
        assert verifier._redis.connection_pool.max_connections == redis_pool.DEFAULT_MAX_CONNECTIONS
    finally:
        await verifier.close()


async def test_gateway_client_waits_instead_of_failing(redis_url):
    """The gateway's client (redis_pool.connect with its settings): a pool of 5 serves 400 concurrent
    commands by queueing them."""
    client = redis_pool.connect(redis_url, max_connections=5, pool_timeout_s=5.0)
    try:
        results = await asyncio.gather(*[client.mget("a", "b") for _ in range(BURST)], return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)]
        assert len(client.connection_pool._in_use_connections) + len(client.connection_pool._available_connections) <= 5
    finally:
        await client.aclose()


async def test_exhausted_pool_is_busy_not_an_outage(redis_url):
    """Every connection held past the bounded wait: RESOURCE_EXHAUSTED ("busy, retry", 429 at the
    gateway) after about pool_timeout_s, never UNAVAILABLE "revocation store unreachable"."""
    factory = TokenFactory()
    client = redis_pool.connect(redis_url, max_connections=2, pool_timeout_s=0.3)
    verifier = factory.verifier(redis=client)
    holders = [asyncio.create_task(client.blpop([f"hv:test:never:{i}"], timeout=3)) for i in range(2)]
    await asyncio.sleep(0.2)
    try:
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(ResourceExhausted) as caught:
            await verifier.verify(factory.issue())
        assert not isinstance(caught.value, Unavailable)
        assert 0.25 < loop.time() - t < 2.0
    finally:
        for h in holders:
            h.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        await client.aclose()


async def test_pooled_connections_heal_after_a_redis_restart():
    """Redis restarted (its own redis-server, killed with SIGKILL): every pooled connection is
    broken. The next burst must not fail on them (the soak after the Redis-down fault saw a few
    503s before connections were retried), and with Redis down a command still fails fast."""
    import time

    from harness import DEFAULT_OFFSET, OwnRedis

    own = OwnRedis(6379 + DEFAULT_OFFSET + 1)
    own.start()
    client = redis_pool.connect(own.url, max_connections=50, pool_timeout_s=5.0)
    try:
        await asyncio.gather(*[client.mget("a", "b") for _ in range(200)])  # 50 connections open
        own.kill()
        t = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.mget("a", "b")
        assert time.monotonic() - t < 1.0  # down: fails fast, no seconds of retries
        own.start()
        for _ in range(2):
            results = await asyncio.gather(*[client.mget("a", "b") for _ in range(200)], return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, f"{len(failures)} failed after the restart, e.g. {failures[0]!r}"
    finally:
        await client.aclose()
        own.stop()
