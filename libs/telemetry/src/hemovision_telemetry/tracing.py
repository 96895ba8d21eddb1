"""OpenTelemetry tracing: always on, so every request has a trace id; exporting is optional.

configure_tracing(service) installs a real TracerProvider and the instrumentations every process
needs, whether or not anything is exported:

- gRPC (grpc.aio servers and channels): W3C trace context in the metadata of every hop
  (OpenTelemetry's gRPC instrumentation when exporting; hemovision_grpc_server's own cheap
  propagation otherwise, see exporting());
- PostgreSQL (psycopg2, so every SQLAlchemy engine whenever it was created), Redis (sync and
  asyncio clients): a span per statement / command, only when spans are exported;
- Celery: the publisher puts the traceparent in the task headers, the worker continues it, so a
  batch item's task and a training job keep the trace of the request that enqueued them;
- HTTP: FastAPI's own telemetry makes the server span of every request (continuing the caller's
  `traceparent`) as soon as a provider is set; `HttpTracingMiddleware` answers every request with
  `traceresponse` (W3C Trace Context Level 2) and `X-Trace-Id`.

HV_OTEL_EXPORTER picks what happens to the spans:
- `none` (default): nothing is recorded or exported. The sampler drops every span, so a span is a
  bare id pair (trace id kept from the caller or generated, span id generated) that still travels
  in every header and log line; the cost is the propagation and the id generation.
- `otlp`: OTLP over gRPC (OTEL_EXPORTER_OTLP_ENDPOINT, default localhost:4317; the exporter's
  other OTEL_EXPORTER_OTLP_* settings apply), batched. Sampling follows OTEL_TRACES_SAMPLER
  (default parentbased_always_on: a caller's sampled flag is honoured).
- `console`: spans as JSON on stdout (debugging).
- `off`: no provider and no instrumentation, so no ids either: the system as it was before tracing
  was always on, for A/B measurements of what tracing costs (docs/operations.md "Tracing").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext

log = logging.getLogger(__name__)

EXPORTERS = ("none", "console", "otlp", "off")
# Response headers that carry the trace of the request (lower case, as ASGI sends them).
TRACE_RESPONSE_HEADER = "traceresponse"  # W3C Trace Context Level 2: 00-<trace id>-<span id>-<flags>
TRACE_ID_HEADER = "x-trace-id"  # the 32 hex digits alone, for people and log searches
# Where HttpTracingMiddleware leaves the response headers in the ASGI scope, for answers sent
# outside the request's span (Starlette's last-resort 500 handler).
TRACE_SCOPE_KEY = "hemovision.trace_headers"

_configured: bool | None = None  # None: not yet; else whether spans are exported


def configure_tracing(service: str, exporter: str | None = None) -> bool:
    """Installs the TracerProvider (resource service.name=`service`) and the instrumentations, once
    per process. Returns True when spans are exported. `exporter` defaults to $HV_OTEL_EXPORTER
    (none, console, otlp or off); any other value raises ValueError."""
    global _configured
    if _configured is not None:
        return _configured
    exporter = (exporter or os.environ.get("HV_OTEL_EXPORTER") or "none").strip().lower()
    if exporter not in EXPORTERS:
        raise ValueError(f"HV_OTEL_EXPORTER must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    if exporter == "off":  # no provider, no instrumentation, no ids: only to measure what tracing costs
        _configured = False
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    resource = Resource.create({"service.name": service})
    if exporter == "none":
        provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    else:
        provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = exporter != "none"
    _instrument(_configured)
    log.debug("tracing configured", extra={"exporter": exporter})
    return _configured


def exporting() -> bool:
    """True when configure_tracing() set up an exporter: spans are recorded, and OpenTelemetry's
    gRPC instrumentation makes client and server spans. Otherwise hemovision_grpc_server carries
    the trace context itself (ids only: OpenTelemetry's aio interceptors cost ~0.1 ms of CPU per
    call and side even when nothing is recorded; docs/operations.md "Tracing")."""
    return bool(_configured)


def _instrument(export: bool) -> None:
    if export:
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer, filters
        from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        # health checks (probes, readiness polls) and reflection are not requests: no spans for them
        traced = filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection.")))
        GrpcAioInstrumentorServer(filter_=traced).instrument()
        GrpcAioInstrumentorClient(filter_=traced).instrument()
        # Spans per SQL statement and Redis command only when they are recorded: without an
        # exporter they would be non-recording spans nobody sees (the trace id in logs and answers
        # is the request's), and bench-serving measured the tracing + metrics cost above the 3 %
        # budget with them on the default path (docs/operations.md "Cost").
        Psycopg2Instrumentor().instrument(skip_dep_check=True)
        RedisInstrumentor().instrument()
    try:
        import celery  # noqa: F401 - only processes that have it publish or run tasks
    except ImportError:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument()


def trace_celery_worker(service: str) -> None:
    """Call at import of a Celery app's module: each worker process (prefork child or the solo
    pool) configures tracing as `service` when it starts, after any fork (an exporter's gRPC
    channel never crosses a fork). Its tasks then continue the trace in their headers."""
    from celery.signals import worker_process_init

    def _configure(**_: Any) -> None:
        configure_tracing(service)

    worker_process_init.connect(_configure, weak=False)


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None outside a span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def trace_response_headers(ctx: SpanContext | None = None) -> dict[str, str]:
    """`traceresponse` and `X-Trace-Id` for `ctx` (default: the active span's); {} outside a span."""
    ctx = ctx or trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    trace_id = format(ctx.trace_id, "032x")
    return {
        TRACE_RESPONSE_HEADER: f"00-{trace_id}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}",
        TRACE_ID_HEADER: trace_id,
    }


ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class HttpTracingMiddleware:
    """ASGI middleware: `traceresponse` + `X-Trace-Id` of the request's server span on every answer
    (413s and 429s of other middleware included: add it outermost). The server span itself is
    FastAPI's own (FastAPI >= 0.16x traces every request once a TracerProvider is set: it continues
    the caller's `traceparent`, else starts a trace, names the span by route template and wraps
    even Starlette's last-resort 500 handler). The headers are also left in scope[TRACE_SCOPE_KEY]."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = trace_response_headers()
        if not headers:
            await self.app(scope, receive, send)
            return
        scope[TRACE_SCOPE_KEY] = headers
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

        async def send_with_trace(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *raw]}
            await send(message)

        await self.app(scope, receive, send_with_trace)
