"""Series only the gateway can see (the rest: hemovision_telemetry.metrics)."""

from __future__ import annotations

import redis

from hemovision_gateway.batches.worker import QUEUE as BATCH_QUEUE
from hemovision_telemetry.metrics import ScrapeTimeGauges

# The training service's Celery queue (hemovision_training.settings.queue's default).
TRAINING_QUEUE = "training"


def queue_depths(broker_url: str, queues: tuple[str, ...] = (BATCH_QUEUE, TRAINING_QUEUE)) -> ScrapeTimeGauges:
    """hemovision_queue_depth{queue}: messages waiting in each Celery queue, read at scrape time
    (a Redis broker keeps a queue as a list of its name; another broker reports nothing)."""
    client = redis.Redis.from_url(broker_url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def read() -> list[tuple[tuple[str, ...], float]]:
        if not broker_url.startswith(("redis://", "rediss://")):
            return []
        return [((queue,), float(client.llen(queue))) for queue in queues]

    return ScrapeTimeGauges("hemovision_queue_depth", "Messages waiting in a Celery queue.", ["queue"], read)
