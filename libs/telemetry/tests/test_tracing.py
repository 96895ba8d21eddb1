"""Tracing is always on: with no exporter every request still gets ids (nothing is recorded), the
response headers follow W3C Trace Context Level 2, and a Celery task's headers carry the trace."""

from __future__ import annotations

import re

import pytest
from opentelemetry import trace
from opentelemetry.propagate import extract

from hemovision_telemetry import (
    HttpTracingMiddleware,
    configure_tracing,
    current_trace_id,
    trace_response_headers,
)
from hemovision_telemetry.tracing import TRACE_SCOPE_KEY

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module", autouse=True)
def traced():
    assert configure_tracing("telemetry-test") is False  # no exporter: ids only
    assert configure_tracing("telemetry-test", exporter="otlp") is False  # once per process


def test_an_unknown_exporter_is_refused(monkeypatch):
    import hemovision_telemetry.tracing as tracing

    monkeypatch.setattr(tracing, "_configured", None)
    with pytest.raises(ValueError, match="HV_OTEL_EXPORTER"):
        configure_tracing("x", exporter="jaeger")


def test_spans_have_ids_but_record_nothing_without_an_exporter():
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        assert not span.is_recording()
        assert re.fullmatch("[0-9a-f]{32}", current_trace_id() or "")
        headers = trace_response_headers()
    ctx = span.get_span_context()
    assert headers == {"traceresponse": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}",
                       "x-trace-id": f"{ctx.trace_id:032x}"}
    assert not ctx.trace_flags.sampled  # flags 00, or 02 (Level 2 "random trace id") for a trace started here
    assert current_trace_id() is None and trace_response_headers() == {}


def test_a_callers_trace_is_continued():
    parent = extract({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    with trace.get_tracer("test").start_as_current_span("request", context=parent):
        assert current_trace_id() == TRACE_ID


async def test_the_middleware_answers_with_the_trace_headers():
    sent: list[dict] = []
    seen: dict = {}

    async def app(scope, receive, send):
        seen.update(scope)
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"x"})

    async def send(message):
        sent.append(message)

    middleware = HttpTracingMiddleware(app)
    parent = extract({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    with trace.get_tracer("test").start_as_current_span("POST /x", context=parent):
        await middleware({"type": "http", "method": "POST", "path": "/x", "headers": []}, None, send)
    headers = dict(sent[0]["headers"])
    assert headers[b"x-trace-id"] == TRACE_ID.encode() and headers[b"content-type"] == b"text/plain"
    assert re.fullmatch(rf"00-{TRACE_ID}-[0-9a-f]{{16}}-00", headers[b"traceresponse"].decode())
    assert seen[TRACE_SCOPE_KEY]["x-trace-id"] == TRACE_ID
    # outside a span (tracing not set up in that process) it changes nothing
    sent.clear()
    await middleware({"type": "http", "method": "GET", "path": "/x", "headers": []}, None, send)
    assert dict(sent[0]["headers"]) == {b"content-type": b"text/plain"}


def test_a_published_celery_task_carries_the_traceparent():
    from celery import Celery
    from celery.signals import before_task_publish

    app = Celery("t", broker="memory://")
    captured: dict = {}

    def grab(headers=None, **_):
        captured.update(headers or {})

    before_task_publish.connect(grab, weak=False)
    try:
        parent = extract({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        with trace.get_tracer("test").start_as_current_span("POST /api/v1/batches", context=parent):
            app.send_task("hemovision.test.task", kwargs={"x": 1})
    finally:
        before_task_publish.disconnect(grab)
    assert captured["traceparent"].split("-")[1] == TRACE_ID
