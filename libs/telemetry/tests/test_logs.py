"""JSON log lines carry the active trace id, so a log line can be joined to its trace."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from hemovision_telemetry import JsonFormatter, current_trace_id


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("hv.test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_plain_line_is_json_with_extras():
    line = json.loads(JsonFormatter("auth").format(_record("hello %s" % "world", port=50051)))
    assert line["msg"] == "hello world" and line["service"] == "auth" and line["level"] == "info"
    assert line["port"] == 50051
    assert "trace_id" not in line


def test_trace_id_inside_a_span():
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        line = json.loads(JsonFormatter("gateway").format(_record("inside")))
        expected = format(span.get_span_context().trace_id, "032x")
    assert line["trace_id"] == expected
    assert current_trace_id() is None  # outside the span again
    assert len(line["trace_id"]) == 32
