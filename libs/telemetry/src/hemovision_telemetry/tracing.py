"""OpenTelemetry tracing. Off unless HV_OTEL_EXPORTER is `console` or `otlp`.

The gRPC instrumentors propagate W3C trace context through metadata, so one
request keeps one trace id from the gateway down to the model server.
"""

from __future__ import annotations

import os

from opentelemetry import trace

_configured = False


def configure_tracing(service: str, exporter: str | None = None) -> bool:
    """Sets up a TracerProvider and instruments grpc.aio servers and clients.

    Returns True when tracing is on. `exporter` defaults to $HV_OTEL_EXPORTER
    ("none", "console" or "otlp"; otlp needs opentelemetry-exporter-otlp installed).
    """
    global _configured
    exporter = (exporter or os.environ.get("HV_OTEL_EXPORTER", "none")).lower()
    if exporter in ("", "none") or _configured:
        return _configured
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # optional extra

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        raise ValueError(f"HV_OTEL_EXPORTER must be none, console or otlp, not {exporter!r}")
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    _configured = True
    return True


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None outside a span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
