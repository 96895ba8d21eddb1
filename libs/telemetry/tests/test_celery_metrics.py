"""A Celery worker's own RED metrics on real workers and a real Redis broker: tasks that succeed,
fail and retry are counted, timed and shown in progress on the worker's /metrics, whether they run
in the worker process (solo pool, started here in-process) or in forked children (prefork, a real
`celery worker` process, children recycled after every task as the training worker's are, one
of them killed mid-task)."""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from prometheus_client.parser import text_string_to_metric_families

# Imported by every publisher of the system too (the services' make_celery modules): it stamps each
# message with its publication time, which the worker's queue wait is measured from.
from hemovision_telemetry.celery_metrics import worker_metrics_port

HERE = Path(__file__).resolve().parent


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_for(port: int, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float], timeout: float = 30.0) -> dict:
    """Scrapes until every expected sample has its value; returns the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(port)
            if all(samples.get(key) == v for key, v in expected.items()):
                return samples
        except httpx.TransportError:  # not listening yet
            samples = {}
        if time.monotonic() > deadline:
            pytest.fail(f"/metrics never showed {expected}; last: "
                        f"{ {k: samples.get(k) for k in expected} }")
        time.sleep(0.1)


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def queue() -> str:
    return f"telemetry-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def test_app(redis_url, queue, monkeypatch):
    """celery_metrics_app imported in this process, on the test Redis database and its own queue."""
    monkeypatch.setenv("HV_TEST_CELERY_BROKER", redis_url)
    monkeypatch.setenv("HV_TEST_CELERY_QUEUE", queue)
    monkeypatch.setenv("HV_TEST_CELERY_METRICS_PORT", "0")
    monkeypatch.syspath_prepend(str(HERE))
    sys.modules.pop("celery_metrics_app", None)
    module = importlib.import_module("celery_metrics_app")
    yield module
    sys.modules.pop("celery_metrics_app", None)


def test_an_in_process_worker_serves_its_tasks_red(test_app, queue):
    app = test_app.app
    with start_worker(app, pool="solo", queues=[queue], perform_ping_check=False, loglevel="WARNING",
                      shutdown_timeout=20):
        port = worker_metrics_port(app)
        assert port
        test_app.succeeds.delay(1.5)
        wait_for(port, {key("celery_tasks_in_progress", task="test.succeeds"): 1.0})
        test_app.succeeds.delay()
        test_app.fails.delay()
        test_app.retries_once.delay()
        samples = wait_for(port, {
            key("celery_tasks_total", task="test.succeeds", state="succeeded"): 2.0,
            key("celery_tasks_total", task="test.fails", state="failed"): 1.0,
            key("celery_tasks_total", task="test.retries_once", state="retried"): 1.0,
            key("celery_tasks_total", task="test.retries_once", state="succeeded"): 1.0,
            key("celery_tasks_in_progress", task="test.succeeds"): 0.0,
        })
        assert value(samples, "celery_task_duration_seconds_count", task="test.succeeds") == 2
        assert value(samples, "celery_task_duration_seconds_sum", task="test.succeeds") >= 1.5
        # each run's wait from publication (the retry's from the end of its countdown) to start
        assert value(samples, "celery_task_queue_wait_seconds_count", task="test.succeeds") == 2
        assert value(samples, "celery_task_queue_wait_seconds_count", task="test.retries_once") == 2
        # the second task waited behind the 1.5 s one in the single-slot pool
        assert value(samples, "celery_task_queue_wait_seconds_sum", task="test.succeeds") >= 0.5
        assert value(samples, "celery_tasks_total", task="test.fails", state="succeeded") is None
        assert value(samples, "process_resident_memory_bytes") > 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _in_progress(gauge_file: Path) -> bool:
    """Whether a child's live-sum gauge file holds a running task (celery_tasks_in_progress > 0)."""
    from prometheus_client.mmap_dict import MmapedDict

    if not gauge_file.exists():
        return False
    return any("celery_tasks_in_progress" in key and value > 0
               for key, value, *_ in MmapedDict.read_all_values_from_file(str(gauge_file)))


def test_a_prefork_worker_sums_its_children_also_recycled_and_killed_ones(redis_url, queue, tmp_path):
    port = free_port()
    env = {**os.environ, "HV_TEST_CELERY_BROKER": redis_url, "HV_TEST_CELERY_QUEUE": queue,
           "HV_TEST_CELERY_METRICS_PORT": str(port), "PYTHONPATH": str(HERE), "TMPDIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # two children, each replaced after one task: the training worker's --max-tasks-per-child 1
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_metrics_app", "worker", "--pool", "prefork",
         "--concurrency", "2", "--max-tasks-per-child", "1", "-Q", queue, "--loglevel", "WARNING",
         "--without-mingle", "--without-gossip", "--without-heartbeat"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = Celery("publisher", broker=redis_url)
    try:
        wait_for(port, {}, timeout=30)
        [multiproc_dir] = tmp_path.glob("hv-test-worker-metrics-*")  # the worker's own, under its TMPDIR
        for _ in range(3):
            client.send_task("test.succeeds", queue=queue)
        client.send_task("test.fails", queue=queue)
        client.send_task("test.retries_once", queue=queue)
        samples = wait_for(port, {
            key("celery_tasks_total", task="test.succeeds", state="succeeded"): 3.0,
            key("celery_tasks_total", task="test.fails", state="failed"): 1.0,
            key("celery_tasks_total", task="test.retries_once", state="retried"): 1.0,
            key("celery_tasks_total", task="test.retries_once", state="succeeded"): 1.0,
        })
        # every child exited after its task: none is in progress (their live series are gone)
        assert not value(samples, "celery_tasks_in_progress", task="test.succeeds")
        assert value(samples, "celery_task_duration_seconds_count", task="test.succeeds") == 3
        assert value(samples, "celery_task_queue_wait_seconds_count", task="test.succeeds") == 3
        # a child killed mid-task: no longer in progress, and the main process counts the failure
        client.send_task("test.succeeds", args=[60], queue=queue)
        wait_for(port, {key("celery_tasks_in_progress", task="test.succeeds"): 1.0})
        # the child whose own in-progress gauge reads 1 (an idle child may have a gauge file too)
        busy = [c for c in _children(worker.pid) if _in_progress(multiproc_dir / f"gauge_livesum_{c}.db")]
        assert len(busy) == 1
        os.kill(busy[0], signal.SIGKILL)
        samples = wait_for(port, {key("celery_tasks_total", task="test.succeeds", state="failed"): 1.0,
                                  key("celery_tasks_total", task="test.succeeds", state="succeeded"): 3.0})
        assert not value(samples, "celery_tasks_in_progress", task="test.succeeds")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            output = worker.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            worker.kill()
            output = worker.communicate()[0].decode(errors="replace")
        client.close()
    assert worker.returncode == 0, output[-4000:]
    assert not multiproc_dir.exists(), "the worker's multiprocess directory outlived it"
