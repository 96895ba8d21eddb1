"""The gateway's metrics: RED per route template (never a raw path with ids), and the Celery
queue depths read from the broker at scrape time."""

from __future__ import annotations

import uuid

import redis
from prometheus_client import CollectorRegistry, REGISTRY

from gateway_fakes import auth, png_bytes
from hemovision_gateway.metrics import queue_depths


def requests(route: str, status: str, method: str = "GET") -> float:
    return REGISTRY.get_sample_value("http_server_requests_total",
                                     {"method": method, "route": route, "status": status}) or 0.0


async def test_requests_are_counted_by_route_template_and_status(client, world):
    _, token = world.user("lab_user")
    detail = "/api/v1/predictions/{prediction_id}"
    before = (requests(detail, "200"), requests(detail, "404"), requests("/api/v1/predictions", "201", "POST"),
              requests("unmatched", "404"), requests("/api/v1/predictions", "401", "POST"))
    created = (await client.post("/api/v1/predictions", headers=auth(token),
                                 files={"file": ("a.png", png_bytes())})).json()["id"]
    assert (await client.get(f"/api/v1/predictions/{created}", headers=auth(token))).status_code == 200
    missing = await client.get(f"/api/v1/predictions/{uuid.uuid4()}", headers=auth(token))
    assert missing.status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    assert (await client.post("/api/v1/predictions", files={"file": ("a.png", png_bytes())})).status_code == 401
    after = (requests(detail, "200"), requests(detail, "404"), requests("/api/v1/predictions", "201", "POST"),
             requests("unmatched", "404"), requests("/api/v1/predictions", "401", "POST"))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1, 1, 1]
    # no series carries a raw id
    routes = {s.labels["route"] for m in REGISTRY.collect() if m.name == "http_server_requests"
              for s in m.samples if "route" in s.labels}
    assert created not in " ".join(routes)
    assert REGISTRY.get_sample_value("http_server_request_duration_seconds_count",
                                     {"method": "GET", "route": detail}) >= 2


def test_queue_depths_are_read_from_the_broker_at_scrape_time(redis_url):
    registry = CollectorRegistry()
    queue = f"test-queue-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    try:
        client.rpush(queue, b"m1", b"m2", b"m3")
        queue_depths(redis_url, (queue,), registry=registry)
        assert registry.get_sample_value("hemovision_queue_depth", {"queue": queue}) == 3
        client.lpop(queue)
        assert registry.get_sample_value("hemovision_queue_depth", {"queue": queue}) == 2
    finally:
        client.delete(queue)
        client.close()
    # a broker that is down leaves the series out; the scrape itself still works
    dead = CollectorRegistry()
    queue_depths("redis://127.0.0.1:1/0", (queue,), registry=dead)
    assert dead.get_sample_value("hemovision_queue_depth", {"queue": queue}) is None
    # a broker that is not Redis: no series either
    other = CollectorRegistry()
    queue_depths("amqp://guest@127.0.0.1//", (queue,), registry=other)
    assert other.get_sample_value("hemovision_queue_depth", {"queue": queue}) is None
