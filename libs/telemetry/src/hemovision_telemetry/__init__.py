"""Observability for every HemoVision process: JSON logs and OpenTelemetry tracing."""

from hemovision_telemetry.logs import JsonFormatter, configure_logging
from hemovision_telemetry.tracing import (
    TRACE_ID_HEADER,
    TRACE_RESPONSE_HEADER,
    HttpTracingMiddleware,
    configure_tracing,
    current_trace_id,
    trace_celery_worker,
    trace_response_headers,
)

__all__ = [
    "TRACE_ID_HEADER",
    "TRACE_RESPONSE_HEADER",
    "HttpTracingMiddleware",
    "JsonFormatter",
    "configure_logging",
    "configure_tracing",
    "current_trace_id",
    "trace_celery_worker",
    "trace_response_headers",
]
