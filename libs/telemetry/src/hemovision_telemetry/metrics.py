"""Prometheus metrics every HemoVision process exports, defined once.

RED per RPC and per HTTP route, under the names the common exporters use (go-grpc-prometheus:
`grpc_server_handled_total`, `grpc_server_handling_seconds`; OpenTelemetry's HTTP semantic
conventions: `http_server_request_duration_seconds`), so stock dashboards and the rules in
deploy/observability read them; plus the domain series the issue asks for (predictions by class,
model version and organization; review rate; queue depths; batch and training progress).

Organizations appear as ids in labels, never names, cells or labels a lab entered: an operator
sees per-organization aggregates only. Each process serves /metrics on its own port
(`serve_metrics`; the topology gives each server one), apart from the API port, so the ingress
never exposes it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


def metrics_enabled() -> bool:
    """False only with HV_METRICS=off: no RED interceptor or middleware, no per-cell series and no
    /metrics port, the system as it was before it exported metrics — for the A/B in bench-serving
    that measures what tracing and metrics cost (docs/operations.md "Cost"). Never for production."""
    value = os.environ.get("HV_METRICS", "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"HV_METRICS must be on or off, not {value!r}")
    return value == "on"


_ENABLED = metrics_enabled()  # read once: observe_prediction runs per cell

# Latency buckets for one request: 1 ms (a cached lookup) to 30 s (a cold model load).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

GRPC_HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"])
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds", "Time from an RPC's arrival to its last response.",
    ["grpc_service", "grpc_method"], buckets=LATENCY_BUCKETS)
GRPC_IN_FLIGHT = Gauge(
    "grpc_server_in_flight_requests", "RPCs being handled now (the HPA's serving metric).",
    ["grpc_service"])

HTTP_REQUESTS = Counter(
    "http_server_requests_total", "HTTP requests answered, by route template and status.",
    ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "http_server_request_duration_seconds", "Time to answer an HTTP request (headers sent).",
    ["method", "route"], buckets=LATENCY_BUCKETS)
HTTP_IN_FLIGHT = Gauge("http_server_in_flight_requests", "HTTP requests being answered now.")

PREDICTIONS = Counter(
    "hemovision_predictions_total", "Cells classified, by predicted class, model version and organization.",
    ["label", "model_version", "organization"])
PREDICTIONS_FLAGGED = Counter(
    "hemovision_predictions_flagged_total",
    "Cells flagged for human review, by model version and organization (review rate = this / predictions).",
    ["model_version", "organization"])
PREDICTION_CONFIDENCE = Histogram(
    "hemovision_prediction_confidence", "Calibrated confidence of the top class.", ["model_version"],
    buckets=(0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0))

BATCH_ITEMS = Counter(
    "hemovision_batch_items_total", "Batch items finished, by outcome (succeeded / failed).", ["outcome"])


def observe_prediction(*, label: str, model_version: str, organization: str, flagged: bool,
                       confidence: float) -> None:
    """One classified cell (inference counts every answer it returns)."""
    if not _ENABLED:
        return
    org = organization or "platform"
    PREDICTIONS.labels(label, model_version, org).inc()
    if flagged:
        PREDICTIONS_FLAGGED.labels(model_version, org).inc()
    PREDICTION_CONFIDENCE.labels(model_version).observe(confidence)


class ScrapeTimeGauges(Collector):
    """Gauges read at scrape time from their source of truth (a queue length in Redis, running
    jobs in PostgreSQL) instead of being kept up to date by every writer. `read()` returns
    (labels, value) pairs; a failing read is logged and yields nothing, never a failed scrape."""

    def __init__(self, name: str, documentation: str, labels: Iterable[str],
                 read: Callable[[], Iterable[tuple[tuple[str, ...], float]]]) -> None:
        self.name, self.documentation, self.labels, self.read = name, documentation, list(labels), read

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labels)]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        try:
            for labels, value in self.read():
                family.add_metric(list(labels), value)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because a source is down
            log.warning("metric %s not read: %s", self.name, exc)
        yield family


_scrape_time_gauges: dict[tuple[int, str], ScrapeTimeGauges] = {}


def register_scrape_time_gauge(gauge: ScrapeTimeGauges, registry: CollectorRegistry = REGISTRY) -> ScrapeTimeGauges:
    """Registers `gauge`, replacing one of the same name (the newest server of a process reads:
    tests start several, each with its own database pool)."""
    key = (id(registry), gauge.name)
    old = _scrape_time_gauges.pop(key, None)
    if old is not None:
        registry.unregister(old)
    registry.register(gauge)
    _scrape_time_gauges[key] = gauge
    return gauge


def scrape_time_gauge(name: str, documentation: str, labels: Iterable[str],
                      read: Callable[[], Iterable[tuple[tuple[str, ...], float]]], *,
                      registry: CollectorRegistry = REGISTRY) -> ScrapeTimeGauges:
    """Declares and registers a gauge that `read()` reads at every scrape (ScrapeTimeGauges)."""
    return register_scrape_time_gauge(ScrapeTimeGauges(name, documentation, labels, read), registry)


def sql_gauge(engine: Any, name: str, documentation: str, labels: Iterable[str], query: str, *,
              registry: CollectorRegistry = REGISTRY) -> ScrapeTimeGauges:
    """A gauge one SQL query on `engine` (SQLAlchemy) reads at every scrape: each row is the label
    values, in `labels` order, then the value (NULL counts as 0). A query that fails (the database
    is down) leaves the series out of that scrape."""
    from sqlalchemy import text

    names, statement = list(labels), text(query)

    def read() -> list[tuple[tuple[str, ...], float]]:
        with engine.connect() as conn:
            rows = conn.execute(statement).all()
        return [(tuple(str(v) for v in row[:len(names)]), float(row[len(names)] or 0)) for row in rows]

    return scrape_time_gauge(name, documentation, names, read, registry=registry)


def redis_list_gauge(redis_url: str, name: str, documentation: str, label: str, keys: Iterable[str], *,
                     registry: CollectorRegistry = REGISTRY) -> ScrapeTimeGauges:
    """A gauge of the lengths of Redis lists (a Celery queue on a Redis broker is the list of its
    name), one series per key, read at every scrape; a URL that is not Redis reports nothing."""
    import redis

    keys = tuple(keys)
    client = (redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
              if redis_url.startswith(("redis://", "rediss://")) else None)

    def read() -> list[tuple[tuple[str, ...], float]]:
        return [] if client is None else [((key,), float(client.llen(key))) for key in keys]

    return scrape_time_gauge(name, documentation, [label], read, registry=registry)


@dataclass
class MetricsEndpoint:
    """A running /metrics HTTP server (prometheus_client's, on its own thread)."""

    server: WSGIServer
    thread: threading.Thread
    port: int

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> MetricsEndpoint | None:
    """Serves `registry` at http://host:port/metrics (port 0: any free port; negative or
    HV_METRICS=off: off)."""
    if port < 0 or not metrics_enabled():
        return None
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound = server.server_address[1]
    log.info("metrics served", extra={"metrics_port": bound})
    return MetricsEndpoint(server, thread, bound)


class HttpMetricsMiddleware:
    """ASGI middleware: RED per route template (`/api/v1/predictions/{prediction_id}`, never the
    raw path, so ids do not explode the series). Unmatched paths count as route "unmatched"."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        HTTP_IN_FLIGHT.inc()

        async def send_and_record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            HTTP_IN_FLIGHT.dec()
            route = scope.get("route")
            template = getattr(route, "path_format", None) or (
                "/static" if scope.get("path", "").startswith("/static") else "unmatched")
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_SECONDS.labels(method, template).observe(time.perf_counter() - start)
