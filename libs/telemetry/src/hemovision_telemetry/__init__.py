"""Observability for every HemoVision process: JSON logs and OpenTelemetry tracing."""

from hemovision_telemetry.logs import JsonFormatter, configure_logging
from hemovision_telemetry.tracing import configure_tracing, current_trace_id

__all__ = ["JsonFormatter", "configure_logging", "configure_tracing", "current_trace_id"]
