"""Faults on the real system (issue 20): a burst beyond the gateway's Redis pool, Redis down, the
model server killed with SIGKILL. Every request must get an answer that says what to do -- 201,
or 503 / 429 with Retry-After -- quickly; never a hang, a 500 or a client error for a server fault.
The bench (make bench-reliability) measures the same at length; these pin the behaviour in CI."""

from __future__ import annotations

import asyncio
import time

import httpx

from harness import Connection, Uploader, history_rows, reconcile, upload_files

RETRYABLE = {"201", "429", "503"}


def _token(system, email: str) -> str:
    return system.register(email=email)["access_token"]


async def test_burst_beyond_the_redis_pool_is_served(system):
    """250 concurrent uploads (the gateway's Redis pool holds 100): none refused as if Redis were
    down (before the fix about half answered 503 "cannot check token revocation")."""
    up = Uploader(system.gateway_url, _token(system, "burst@example.org"), upload_files(32), deadline_s=60)
    from urllib.parse import urlsplit

    u = urlsplit(system.gateway_url)
    conns = [Connection(u.hostname, u.port) for _ in range(250)]
    try:
        answers = await asyncio.gather(*[up.one(c, f"burst-{i}", i) for i, c in enumerate(conns)])
    finally:
        for c in conns:
            c.close()
    kinds = {a.kind for a in answers}
    assert kinds <= {"201", "429"}, sorted({(a.kind, a.detail) for a in answers if a.kind != "201"})
    assert sum(a.kind == "201" for a in answers) >= 200
    rows = history_rows(system.cfg.database_url, "burst-")
    r = reconcile(answers, rows)
    assert r["lost"] == 0 and r["recorded_twice"] == 0, r


async def test_model_server_killed_fast_503_then_recovers(system):
    up = Uploader(system.gateway_url, _token(system, "kill@example.org"), upload_files(32), deadline_s=15,
                  backoff_s=0.5)
    stop = asyncio.Event()
    load = asyncio.create_task(up.run(8, 240, "kill", stop_event=stop))
    try:
        await asyncio.sleep(3)
        assert any(a.kind == "201" for a in up.answers), [a.detail for a in up.answers[:5]]
        old_pid = system.kill("model-server")
        t_kill = time.monotonic()
        recovered = None
        while time.monotonic() - t_kill < 150:
            await asyncio.sleep(0.5)
            recovered = next((a for a in up.answers if a.kind == "201" and a.start > t_kill + 1), None)
            if recovered:
                break
        await asyncio.sleep(1)
    finally:
        stop.set()
        await load
    after = [a for a in up.answers if a.start + a.ms / 1000 >= t_kill]
    errors = [a for a in after if a.kind != "201"]
    assert errors, "the kill went unnoticed: was the model server really killed?"
    assert {a.kind for a in after} <= RETRYABLE, sorted({(a.kind, a.status, a.detail) for a in errors})
    assert all(a.retry_after for a in errors if a.kind in ("503", "429"))
    first = min(errors, key=lambda a: a.start + a.ms / 1000)
    assert first.start + first.ms / 1000 - t_kill < 3.0, "the first 503 came late"
    # fast errors, no hang: an error answer takes a moment, not a deadline
    assert max(a.ms for a in errors) < 5000, max(a.ms for a in errors)
    assert recovered is not None, f"no 201 within 150 s after the kill; pids {system.pids()}"
    assert system.pids().get("model-server") not in (None, old_pid)


async def test_redis_down_fails_closed_then_recovers(system, own_redis):
    """Revocation cannot be checked without Redis: every authenticated request is refused with 503
    + Retry-After and a message that says why (fail closed; a revoked token is never let in), not
    a 500; once Redis is back, requests pass again and the revoked token is still refused."""
    token = _token(system, "redis@example.org")
    revoked = system.login(email="redis@example.org")["access_token"]
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=30) as http:
        def auth(t: str) -> dict:
            return {"Authorization": f"Bearer {t}"}

        assert (await http.post("/api/v1/auth/logout", headers=auth(revoked))).status_code == 204
        await asyncio.sleep(1.5)  # AOF, appendfsync everysec: the revocation is on disk
        assert (await http.get("/api/v1/predictions?limit=1", headers=auth(revoked))).status_code == 401
        own_redis.kill()
        try:
            for t in (token, revoked):
                started = time.monotonic()
                r = await http.get("/api/v1/predictions?limit=1", headers=auth(t))
                assert r.status_code == 503, r.text
                assert time.monotonic() - started < 5
                assert r.headers.get("retry-after")
                assert "revocation" in r.json()["error"]["message"]
            up = Uploader(system.gateway_url, token, upload_files(4), deadline_s=15)
            from urllib.parse import urlsplit

            u = urlsplit(system.gateway_url)
            conn = Connection(u.hostname, u.port)
            a = await up.one(conn, "redis-down-0", 0)
            conn.close()
            assert a.kind == "503" and a.retry_after, (a.kind, a.detail)
        finally:
            own_redis.start()
        deadline = time.monotonic() + 30
        while True:
            r = await http.get("/api/v1/predictions?limit=1", headers=auth(token))
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert r.status_code == 200, r.text
        assert (await http.get("/api/v1/predictions?limit=1", headers=auth(revoked))).status_code == 401
