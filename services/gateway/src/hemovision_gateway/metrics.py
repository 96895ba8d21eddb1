"""Series only the gateway can see (the rest: hemovision_telemetry.metrics)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from hemovision_gateway.batches.worker import QUEUE as BATCH_QUEUE
from hemovision_telemetry.metrics import ScrapeTimeGauges, redis_list_gauge

# The training service's Celery queue (hemovision_training.settings.queue's default).
TRAINING_QUEUE = "training"


def queue_depths(broker_url: str, queues: tuple[str, ...] = (BATCH_QUEUE, TRAINING_QUEUE), *,
                 registry: CollectorRegistry = REGISTRY) -> ScrapeTimeGauges:
    """hemovision_queue_depth{queue}: messages waiting in each Celery queue, read from the broker at
    scrape time (a Redis broker keeps a queue as a list of its name; another broker reports nothing)."""
    return redis_list_gauge(broker_url, "hemovision_queue_depth", "Messages waiting in a Celery queue.", "queue",
                            queues, registry=registry)
