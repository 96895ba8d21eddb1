"""One trace per request, with no exporter configured (the default): the caller's traceparent is
continued, the trace id comes back in `traceresponse` / `X-Trace-Id`, in every error body and in
the log lines, and travels on to the services in the gRPC metadata."""

from __future__ import annotations

import io
import json
import logging
import re

import httpx
import pytest
from gateway_fakes import FakeInference, auth, png_bytes

from hemovision_telemetry import JsonFormatter, configure_tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


@pytest.fixture(scope="module", autouse=True)
def traced():
    # module scope: before the fake peers' server and the gateway's channels are made
    assert configure_tracing("gateway") is False  # HV_OTEL_EXPORTER unset: ids, no export


@pytest.fixture
def seen_traceparents(monkeypatch) -> list[str]:
    seen: list[str] = []
    original = FakeInference.AnalyzeImages

    async def recording(self, request, context):
        seen.append(dict(context.invocation_metadata()).get("traceparent", ""))
        return await original(self, request, context)

    monkeypatch.setattr(FakeInference, "AnalyzeImages", recording)
    return seen


async def _upload(client, token, headers=None):
    return await client.post("/api/v1/predictions", headers={**auth(token), **(headers or {})},
                             files={"file": ("cell.png", png_bytes(), "application/octet-stream")})


async def test_the_callers_traceparent_is_continued_to_the_services(seen_traceparents, client, world):
    _, token = world.user("lab_user")
    r = await _upload(client, token, {"traceparent": TRACEPARENT})
    assert r.status_code == 201, r.text
    assert r.headers["x-trace-id"] == TRACE_ID
    version, trace_id, span_id, flags = r.headers["traceresponse"].split("-")
    assert (version, trace_id) == ("00", TRACE_ID)
    assert re.fullmatch("[0-9a-f]{16}", span_id) and span_id != PARENT_SPAN  # the gateway's own span
    assert flags == "00"  # nothing recorded without an exporter
    # the inference hop carries the same trace, as a child of a span of the gateway
    assert len(seen_traceparents) == 1
    assert seen_traceparents[0].split("-")[1] == TRACE_ID
    assert seen_traceparents[0].split("-")[2] not in (PARENT_SPAN, "0" * 16)


async def test_without_a_traceparent_each_request_gets_a_new_trace(seen_traceparents, client, world):
    _, token = world.user("lab_user")
    first, second = await _upload(client, token), await _upload(client, token)
    ids = [first.headers["x-trace-id"], second.headers["x-trace-id"]]
    assert all(re.fullmatch("[0-9a-f]{32}", i) and i != "0" * 32 for i in ids) and ids[0] != ids[1]
    assert [t.split("-")[1] for t in seen_traceparents] == ids


async def test_a_malformed_traceparent_starts_a_new_trace(client, world):
    _, token = world.user("lab_user")
    r = await _upload(client, token, {"traceparent": "00-zz-not-a-trace"})
    assert r.status_code == 201 and re.fullmatch("[0-9a-f]{32}", r.headers["x-trace-id"])


@pytest.mark.parametrize("case", ["no_token", "unknown_route", "validation", "too_large"])
async def test_error_bodies_carry_the_trace_id(client, world, case):
    _, token = world.user("lab_user")
    if case == "no_token":
        r = await client.get("/api/v1/predictions", headers={"traceparent": TRACEPARENT})
    elif case == "unknown_route":
        r = await client.get("/api/v1/nothing-here", headers={"traceparent": TRACEPARENT})
    elif case == "validation":
        r = await client.get("/api/v1/predictions?limit=0", headers={**auth(token), "traceparent": TRACEPARENT})
    else:
        r = await client.post("/api/v1/predictions", headers={**auth(token), "traceparent": TRACEPARENT},
                              files={"file": ("big.png", b"x" * (11 * 1024 * 1024), "image/png")})
    assert r.status_code >= 400
    assert r.json()["error"]["trace_id"] == TRACE_ID == r.headers["x-trace-id"]


async def test_an_unhandled_error_answers_500_with_the_trace_id(app):
    @app.get("/api/v1/test-boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/api/v1/test-boom", headers={"traceparent": TRACEPARENT})
    assert r.status_code == 500
    assert r.json()["error"] == {"code": "internal_error", "message": "internal error", "trace_id": TRACE_ID}
    assert r.headers["x-trace-id"] == TRACE_ID and r.headers["traceresponse"].startswith(f"00-{TRACE_ID}-")


async def test_log_lines_of_a_request_carry_its_trace_id(app, client):
    @app.get("/api/v1/test-log")
    async def logs() -> dict:
        logging.getLogger("hemovision_gateway.test").warning("inside the request")
        return {}

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("gateway"))
    logger = logging.getLogger("hemovision_gateway.test")
    logger.addHandler(handler)
    try:
        r = await client.get("/api/v1/test-log", headers={"traceparent": TRACEPARENT})
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 200
    line = json.loads(out.getvalue())
    assert line["msg"] == "inside the request" and line["trace_id"] == TRACE_ID
