"""Prometheus metrics of the model server (served at REST /monitoring/prometheus/metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ModelServerMetrics:
    """One registry per server instance (tests run several servers in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hv_model_server_requests",
            "Predict / metadata requests by model, version, signature, API and status code.",
            ["model", "version", "signature", "api", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hv_model_server_request_latency_seconds",
            "Predict latency (queue + compute) by model, version and signature.",
            ["model", "version", "signature"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "hv_model_server_batch_size",
            "Rows per executed batch.",
            ["model", "version", "signature"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_latency = Histogram(
            "hv_model_server_queue_latency_seconds",
            "Time the oldest request of a batch waited in the batching queue.",
            ["model", "signature"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_events = Counter(
            "hv_model_server_model_events",
            "Version lifecycle events: load, load_failed, load_refused, unload.",
            ["model", "version", "event"],
            registry=self.registry,
        )
        self.load_seconds = Histogram(
            "hv_model_server_load_seconds",
            "Load + warm-up time per version.",
            ["model"],
            buckets=(0.5, 1, 2, 5, 10, 20, 60, 120),
            registry=self.registry,
        )
        self.loaded_versions = Gauge(
            "hv_model_server_loaded_versions", "Versions currently loaded.", ["model"], registry=self.registry
        )
