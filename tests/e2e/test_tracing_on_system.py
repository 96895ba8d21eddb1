"""One trace per image on the system as `make up` starts it, exporting over OTLP to a receiver this
test runs: an upload is ONE connected trace (the gateway's HTTP span → inference → preprocess and
the model server, → history, with its PostgreSQL spans), so is a batch item (HTTP POST → the
Celery task in the batch worker → its gRPC calls); the trace id comes back in the response
headers and in error bodies, and the processes' JSON log lines carry it.

Its own stack (conftest's start_system at `second_offset`: the shared stack's offset + 7000,
8000 by default, with its own Redis database) with HV_OTEL_EXPORTER=otlp, so the shared session
stack of the other e2e tests keeps the default (no exporter)."""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SPAN_KIND = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver (what an OpenTelemetry Collector listens with), in this process."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        got = []
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    got.append(Span(
                        attrs.get("service.name", "?"), s.name, SPAN_KIND.get(s.kind, str(s.kind)), s.trace_id.hex(),
                        s.span_id.hex(), s.parent_span_id.hex(), s.start_time_unix_nano, s.end_time_unix_nano,
                        {a.key: _value(a.value) for a in s.attributes}))
        with self.lock:
            self.spans.extend(got)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, trace_id: str, done, timeout: float = 60.0) -> list[Span]:
        deadline = time.monotonic() + timeout
        while True:
            spans = self.trace(trace_id)
            if done(spans):
                time.sleep(1.5)  # stragglers of the same trace still in some process's batch
                return self.trace(trace_id)
            if time.monotonic() > deadline:
                return spans
            time.sleep(0.5)


def _value(v):
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


@dataclass
class TracedSystem:
    base_url: str
    receiver: Receiver
    log_dir: Path
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, system_starter, second_offset: int) -> Iterator[TracedSystem]:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    otlp_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    otel = {"HV_OTEL_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "300"}
    try:
        with system_starter(tmp_path_factory, second_offset, otel, name="trace") as running:
            system = TracedSystem(running.base_url, receiver, running.var_dir / "log")
            with httpx.Client(base_url=system.base_url, timeout=60) as c:
                email, password = f"trace-{uuid.uuid4().hex[:8]}@example.org", f"Tz-{uuid.uuid4().hex}"
                reply = c.post("/api/v1/auth/register", json={"email": email, "password": password,
                                                              "organization": f"Lab {uuid.uuid4().hex[:6]}"})
                assert reply.status_code == 201, reply.text
                reply = c.post("/api/v1/auth/login", json={"email": email, "password": password})
                assert reply.status_code == 200, reply.text
            system.headers = {"Authorization": f"Bearer {reply.json()['access_token']}"}
            yield system
    finally:
        server.stop(0)


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def _tree(spans: list[Span], parent: str) -> Span:
    """Asserts the spans form ONE tree whose root is the gateway's HTTP server span (a child of the
    caller's `parent`), and returns the root."""
    ids = {s.span_id for s in spans}
    assert len(ids) == len(spans), "span ids repeat"
    roots = [s for s in spans if s.parent_id not in ids]
    assert len(roots) == 1, f"not one tree: roots {[(r.service, r.name) for r in roots]}"
    root = roots[0]
    assert (root.service, root.kind, root.parent_id) == ("gateway", "server", parent), root
    return root


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def _server_span(spans: list[Span], service: str, method: str) -> Span:
    found = [s for s in spans if s.service == service and s.kind == "server" and s.name.endswith("/" + method)]
    assert found, f"no {service} {method} span in {sorted({(s.service, s.name) for s in spans})}"
    return found[0]


def _render(spans: list[Span], root: Span) -> str:
    """The span tree as text (docs/operations.md shows one)."""
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id, []).append(s)
    lines: list[str] = []

    def walk(s: Span, depth: int) -> None:
        lines.append(f"{'  ' * depth}{s.service:<15} {s.kind:<8} {s.name}  {s.ms:.1f} ms")
        for c in sorted(children.get(s.span_id, []), key=lambda c: c.start_ns):
            walk(c, depth + 1)

    walk(root, 0)
    return "\n".join(lines)


def _upload_done(spans: list[Span]) -> bool:
    services = {(s.service, s.kind) for s in spans}
    return {("gateway", "server"), ("inference", "server"), ("preprocess", "server"), ("model-server", "server"),
            ("history", "server")} <= services and any(s.attributes.get("db.system") == "postgresql" for s in spans)


def test_one_upload_is_one_connected_trace(traced: TracedSystem, test_images) -> None:
    trace_id, parent, traceparent = _traceparent()
    _, path = test_images[0]
    warm = httpx.post(f"{traced.base_url}/api/v1/predictions", headers=traced.headers,  # keys fetched, caches warm
                      files={"file": ("cell.png", path.read_bytes(), "image/png")}, timeout=60)
    assert warm.status_code == 201, warm.text
    reply = httpx.post(f"{traced.base_url}/api/v1/predictions", headers={**traced.headers, "traceparent": traceparent},
                       files={"file": ("cell.png", path.read_bytes(), "image/png")}, timeout=60)
    assert reply.status_code == 201, reply.text
    assert reply.headers["x-trace-id"] == trace_id
    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-[0-9a-f]{{2}}", reply.headers["traceresponse"])

    spans = traced.receiver.wait_for(trace_id, _upload_done)
    assert _upload_done(spans), sorted({(s.service, s.kind, s.name) for s in spans})
    root = _tree(spans, parent)
    assert root.name == "POST /api/v1/predictions"
    assert reply.headers["traceresponse"].split("-")[2] == root.span_id  # the header names the HTTP span
    by_id = {s.span_id: s for s in spans}
    inference = _server_span(spans, "inference", "AnalyzeImages")
    assert root in _ancestors(inference, by_id)
    for service, method in (("preprocess", "PreprocessBatch"), ("model-server", "Predict")):
        assert inference in _ancestors(_server_span(spans, service, method), by_id), (service, method)
    history = _server_span(spans, "history", "RecordPrediction")
    assert root in _ancestors(history, by_id)
    assert any(s.attributes.get("db.system") == "postgresql" and history in _ancestors(s, by_id) for s in spans)
    print("\n" + _render(spans, root))  # `pytest -s`: the example in docs/operations.md

    # JSON log lines written inside the trace carry its id: at least the gateway's access log line
    lines = [json.loads(line) for f in traced.log_dir.glob("*.log") for line in f.read_text(errors="replace").splitlines()
             if line.startswith("{") and trace_id in line]
    print(f"{len(lines)} log lines of the upload's trace:", sorted({(line['service'], line['msg']) for line in lines}))
    assert all(line.get("trace_id") == trace_id for line in lines)
    assert any(line["service"] == "gateway" and "POST /api/v1/predictions" in line["msg"] for line in lines), lines


def test_one_batch_item_is_one_connected_trace(traced: TracedSystem, test_images) -> None:
    trace_id, parent, traceparent = _traceparent()
    _, path = test_images[1]
    reply = httpx.post(f"{traced.base_url}/api/v1/batches", headers={**traced.headers, "traceparent": traceparent},
                       files={"files": ("cell.png", path.read_bytes(), "image/png")}, timeout=60)
    assert reply.status_code == 202, reply.text
    assert reply.headers["x-trace-id"] == trace_id
    batch_id = reply.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        body = httpx.get(f"{traced.base_url}/api/v1/batches/{batch_id}", headers=traced.headers, timeout=30).json()
        if body["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    assert body["items"][0]["status"] == "succeeded", body

    def done(spans: list[Span]) -> bool:
        return any(s.service == "batch-worker" and s.kind == "consumer" for s in spans) and \
            {("inference", "server"), ("history", "server")} <= {(s.service, s.kind) for s in spans}

    spans = traced.receiver.wait_for(trace_id, done)
    assert done(spans), sorted({(s.service, s.kind, s.name) for s in spans})
    root = _tree(spans, parent)
    assert root.name == "POST /api/v1/batches"
    by_id = {s.span_id: s for s in spans}
    task = next(s for s in spans if s.service == "batch-worker" and s.kind == "consumer")
    assert task.name == "run/hemovision.batches.process_item"
    producer = by_id[task.parent_id]
    assert (producer.service, producer.kind) == ("gateway", "producer") and root in _ancestors(producer, by_id)
    analyze = _server_span(spans, "inference", "AnalyzeImages")
    assert task in _ancestors(analyze, by_id)
    assert task in _ancestors(_server_span(spans, "history", "RecordBatchItem"), by_id)
    print("\n" + _render(spans, root))
    # the worker's JSON log lines about this item carry the trace id
    worker_lines = [json.loads(line) for line in (traced.log_dir / "batch-worker.log").read_text().splitlines()
                    if line.startswith("{")]
    mine = [line for line in worker_lines if line.get("trace_id") == trace_id]
    print("batch worker log lines of the item's trace:", [line["msg"][:80] for line in mine])
    assert mine, worker_lines[-5:]


def test_errors_carry_the_trace_id(traced: TracedSystem) -> None:
    trace_id, parent, traceparent = _traceparent()
    reply = httpx.get(f"{traced.base_url}/api/v1/predictions", headers={"traceparent": traceparent}, timeout=30)
    assert reply.status_code == 401
    assert reply.json()["error"]["trace_id"] == trace_id == reply.headers["x-trace-id"]
    # without a traceparent: a trace starts at the gateway, and it is the one exported
    reply = httpx.post(f"{traced.base_url}/api/v1/predictions", headers=traced.headers,
                       files={"file": ("x.png", io.BytesIO(b"not an image at all"), "image/png")}, timeout=30)
    assert 400 <= reply.status_code < 500, reply.text
    generated = reply.json()["error"]["trace_id"]
    assert re.fullmatch("[0-9a-f]{32}", generated) and generated == reply.headers["x-trace-id"]
    spans = traced.receiver.wait_for(generated, lambda s: any(x.service == "gateway" and x.kind == "server" for x in s))
    root = next(s for s in spans if s.service == "gateway" and s.kind == "server")
    assert root.parent_id == "" and root.attributes.get("http.status_code", reply.status_code) == reply.status_code
