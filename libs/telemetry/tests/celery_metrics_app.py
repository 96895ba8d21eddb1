"""A Celery app for test_celery_metrics.py: the same module runs in the test process (an in-process
worker) and as `celery -A celery_metrics_app worker --pool prefork` (a real worker with forked
children). Broker, queue and metrics port come from the environment the test sets."""

from __future__ import annotations

import os
import time

from celery import Celery

from hemovision_telemetry.celery_metrics import serve_celery_metrics

QUEUE = os.environ.get("HV_TEST_CELERY_QUEUE", "telemetry-test")
app = Celery("celery_metrics_app", broker=os.environ.get("HV_TEST_CELERY_BROKER", "redis://127.0.0.1:6379/11"))
app.conf.update(task_default_queue=QUEUE, task_ignore_result=True, worker_prefetch_multiplier=1,
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
serve_celery_metrics(app, "test-worker", int(os.environ.get("HV_TEST_CELERY_METRICS_PORT", "0")), host="127.0.0.1")


@app.task(name="test.succeeds")
def succeeds(seconds: float = 0.0) -> str:
    time.sleep(seconds)
    return "ok"


@app.task(name="test.fails")
def fails() -> None:
    raise ValueError("this task always fails")


@app.task(name="test.retries_once", bind=True, max_retries=3)
def retries_once(self) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0.2)
    return "ok after a retry"
