"""Fixtures: fake peers on a real grpc.aio server (port 0), real Redis, the real app over httpx."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).parent))

from gateway_fakes import SERVICE_SECRET, World, start_fakes  # noqa: E402

from hemovision_gateway import Settings, create_app  # noqa: E402
from hemovision_gateway.clients import Clients  # noqa: E402

@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def peers(world):
    server, port, hs = await start_fakes(world)
    yield f"127.0.0.1:{port}", hs
    await server.stop(0)


@pytest.fixture
def settings(peers, redis_url, tmp_path) -> Settings:
    addr, _ = peers
    return Settings(
        auth_addr=addr, inference_addr=addr, history_addr=addr, reports_addr=addr,
        training_addr=addr, redis_url=redis_url, upload_dir=str(tmp_path / "uploads"), batch_inline=True,
        service_secret=SERVICE_SECRET, rate_limit_requests=10_000, rate_limit_auth_requests=10_000,
    )


@pytest.fixture
async def app(settings, world):
    clients = Clients.connect(settings)
    r = aioredis.Redis.from_url(settings.redis_url)
    application = create_app(settings, clients, verifier=world.factory.verifier(redis=r), redis=r)
    async with application.router.lifespan_context(application):
        yield application
    await clients.close()
    await r.aclose()


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
