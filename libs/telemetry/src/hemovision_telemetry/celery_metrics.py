"""RED metrics of a Celery worker, served on the worker's own /metrics port.

    celery_tasks_total{task, state}          tasks that ended: succeeded, failed, retried (rejected, ignored)
    celery_task_duration_seconds{task}       time a task ran (histogram)
    celery_tasks_in_progress{task}           tasks running now
    celery_task_queue_wait_seconds{task}     publish (or ETA, for a retry's countdown) to start (histogram)

Names after the stock Celery exporters (counter per task and state, runtime histogram), so rules
and dashboards read them like any other worker's. Recorded from Celery's task signals in the
process that runs the task; `task` is the registered task name (a handful per worker), never an
argument.

Pools. A worker's pool decides where tasks run, and so where the metrics are recorded:

- solo / threads (gevent, eventlet): in the worker process itself, which serves them: plain
  in-process metrics.
- prefork (Celery's default; `--concurrency=2` of the batch worker in compose and Kubernetes, the
  training worker's one child per job, `--max-tasks-per-child 1`): in forked children that serve
  nothing. The worker's main process then switches prometheus_client to its multiprocess mode
  before the pool forks (a fresh PROMETHEUS_MULTIPROC_DIR of its own under the temp dir, per
  worker process, removed at shutdown): every child writes its values to mmapped files there, and
  /metrics, served by the main process, sums them (MultiProcessCollector). Counters and
  histograms of children that exited stay counted; the in-progress gauge counts live children only
  (`livesum`: a child's file is dropped when it exits, or at the next scrape when it was killed).

Either way the choice is made from the pool the worker really starts with (`worker_init`, in the
main process before the pool exists), so every way of starting a worker (`make up`, compose,
Kubernetes, `celery worker --pool ...` by hand) exports the same series. prometheus_client itself
picks multiprocess mode from PROMETHEUS_MULTIPROC_DIR once, at import; setting that for a whole
process is no option here (the gateway API imports the batch worker's app to enqueue, and must stay
an ordinary single process), so the worker sets the value class the variable would have chosen
(`values.ValueClass`), at start. Series made before that keep in-process values: none of ours,
whose label children are first made by a task, in a child.

The queue wait needs the publish time: `before_task_publish` stamps it in the message headers
(`hv_published_at`, epoch seconds) in every process that imports this module, i.e. whoever builds
the app through the services' make_celery (API, servers, beat, the workers' own retries). A task
published without it is not observed.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from celery import Celery, signals
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from hemovision_telemetry.metrics import MetricsEndpoint, metrics_enabled, serve_metrics

log = logging.getLogger(__name__)

# A batch item takes ~0.1-5 s, a training job minutes to hours.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
PUBLISHED_AT_HEADER = "hv_published_at"
STATES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried", "REJECTED": "rejected",
          "IGNORED": "ignored"}

# What a worker serves when its tasks run in its own process (solo/threads pools).
WORKER_REGISTRY = CollectorRegistry(auto_describe=True)
TASKS = Counter("celery_tasks_total", "Celery tasks that ended, by task name and state "
                "(succeeded, failed, retried; rejected, ignored).", ["task", "state"], registry=WORKER_REGISTRY)
TASK_SECONDS = Histogram("celery_task_duration_seconds", "Time a Celery task ran, whatever its outcome.",
                         ["task"], buckets=DURATION_BUCKETS, registry=WORKER_REGISTRY)
IN_PROGRESS = Gauge("celery_tasks_in_progress", "Celery tasks running now.", ["task"],
                    multiprocess_mode="livesum", registry=WORKER_REGISTRY)
QUEUE_WAIT = Histogram("celery_task_queue_wait_seconds",
                       "Time from a task's publication (or its ETA, for a retry's countdown) to its start.",
                       ["task"], buckets=DURATION_BUCKETS, registry=WORKER_REGISTRY)
ProcessCollector(registry=WORKER_REGISTRY)

_started: dict[str, float] = {}  # task id -> perf_counter at task_prerun, in the process running it
_lock = threading.Lock()
_instrumented: dict[int, tuple[Celery, str, int, str]] = {}  # id(app) -> (app, name, port, host)
_running: dict[int, _ServedWorker] = {}


class _ServedWorker:
    """A started worker's /metrics: its endpoint and, under prefork, its multiprocess directory."""

    def __init__(self, endpoint: MetricsEndpoint | None, multiproc_dir: str | None,
                 previous_value_class: Any = None) -> None:
        self.endpoint, self.multiproc_dir, self.previous_value_class = endpoint, multiproc_dir, previous_value_class

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
        if self.multiproc_dir is not None:
            values.ValueClass = self.previous_value_class
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == self.multiproc_dir:
                del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            shutil.rmtree(self.multiproc_dir, ignore_errors=True)


class _LiveMultiProcessCollector(MultiProcessCollector):
    """MultiProcessCollector that first drops the live-gauge files of children that are gone
    (a child killed by the OOM killer or a hard time limit never says so itself)."""

    def collect(self) -> Iterable[Metric]:
        for entry in os.listdir(self._path):
            pid = entry.rsplit("_", 1)[-1].removesuffix(".db")
            if entry.startswith("gauge_live") and entry.endswith(".db") and pid.isdigit() and not _alive(int(pid)):
                mark_process_dead(int(pid), self._path)
        return super().collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_at_exit(path: str, main_pid: int) -> None:
    """A worker that ends without worker_shutdown (a cold stop) still leaves nothing behind; never
    a child's doing (a forked child inherits the atexit list)."""
    if os.getpid() == main_pid:
        shutil.rmtree(path, ignore_errors=True)


def serve_celery_metrics(app: Celery, name: str, port: int, host: str = "0.0.0.0") -> None:
    """Call at import of a worker's Celery app module: when a worker of `app` starts, it serves
    the celery_* series at http://host:port/metrics (port 0: any free port, see
    worker_metrics_port(); negative or HV_METRICS=off: not served). Importing the module in a
    process that only publishes (the API) starts nothing."""
    _instrumented[id(app)] = (app, name, port, host)


def worker_metrics_port(app: Celery) -> int | None:
    """The port a running worker of `app` serves /metrics on (None: not served, or not started)."""
    served = _running.get(id(app))
    return served.endpoint.port if served is not None and served.endpoint is not None else None


def _prefork(worker: Any) -> bool:
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool

    pool = get_implementation(worker.pool_cls)
    return isinstance(pool, type) and issubclass(pool, TaskPool)


@signals.worker_init.connect(weak=False, dispatch_uid="hemovision-celery-metrics-init")
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """The worker's main process, before its pool exists."""
    entry = _instrumented.get(id(getattr(sender, "app", None)))
    if entry is None:
        return
    app, name, port, host = entry
    if port < 0 or not metrics_enabled():
        return
    if _prefork(sender):
        # Children fork after this: from now on every metric value is an mmapped file in `path`.
        path = tempfile.mkdtemp(prefix=f"hv-{name}-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        previous = values.ValueClass
        values.ValueClass = values.MultiProcessValue()
        registry = CollectorRegistry()
        _LiveMultiProcessCollector(registry, path)
        ProcessCollector(registry=registry)  # the main process's own
        served = _ServedWorker(None, path, previous)
        atexit.register(_remove_at_exit, path, os.getpid())
    else:
        registry, served = WORKER_REGISTRY, _ServedWorker(None, None)
    try:
        served.endpoint = serve_metrics(port, host=host, registry=registry)
    except OSError as exc:  # the worker still works; only its metrics are missing
        log.error("worker metrics not served on port %s: %s", port, exc)
    _running[id(app)] = served
    log.info("worker metrics", extra={"worker": name, "metrics_port": worker_metrics_port(app),
                                      "multiprocess": served.multiproc_dir is not None})


@signals.worker_shutdown.connect(weak=False, dispatch_uid="hemovision-celery-metrics-shutdown")
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    served = _running.pop(id(getattr(sender, "app", None)), None)
    if served is not None:
        served.close()


@signals.worker_process_shutdown.connect(weak=False, dispatch_uid="hemovision-celery-metrics-child-exit")
def _on_child_exit(pid: int | None = None, **_: Any) -> None:
    """In a prefork child as it exits: its tasks no longer count as in progress."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and os.path.isdir(path):
        mark_process_dead(pid or os.getpid(), path)


@signals.before_task_publish.connect(weak=False, dispatch_uid="hemovision-celery-metrics-publish")
def _stamp_published_at(headers: dict | None = None, **_: Any) -> None:
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


@signals.task_prerun.connect(weak=False, dispatch_uid="hemovision-celery-metrics-prerun")
def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    with _lock:
        _started[task_id] = time.perf_counter()
    IN_PROGRESS.labels(task.name).inc()
    waited = _queue_wait(task.request)
    if waited is not None:
        QUEUE_WAIT.labels(task.name).observe(waited)


def _queue_wait(request: Any) -> float | None:
    published = getattr(request, PUBLISHED_AT_HEADER, None)
    if published is None:
        return None
    ready = float(published)
    eta = getattr(request, "eta", None)
    if eta:  # a countdown (a retry's back-off) is not waiting
        try:
            when = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            ready = max(ready, when.timestamp())
        except ValueError:
            pass
    return max(0.0, time.time() - ready)


@signals.task_postrun.connect(weak=False, dispatch_uid="hemovision-celery-metrics-postrun")
def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    with _lock:
        started = _started.pop(task_id, None)
    if started is None:
        return
    IN_PROGRESS.labels(task.name).dec()
    TASK_SECONDS.labels(task.name).observe(time.perf_counter() - started)
    TASKS.labels(task.name, STATES.get(state or "", (state or "unknown").lower())).inc()


@signals.task_failure.connect(weak=False, dispatch_uid="hemovision-celery-metrics-failure")
def _on_failure(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                **_: Any) -> None:
    """Failures the worker's main process declares for a run that never reached task_postrun: a
    hard time limit, a child lost without the message being requeued. Every other failure is
    counted once, by task_postrun."""
    from billiard.exceptions import TimeLimitExceeded, WorkerLostError

    if sender is None or task_id is None or not isinstance(exception, (TimeLimitExceeded, WorkerLostError)):
        return
    with _lock:
        started = _started.pop(task_id, None)
    if started is not None:  # the run was in this process (solo pool): it is no longer in progress
        IN_PROGRESS.labels(sender.name).dec()
    TASKS.labels(sender.name, "failed").inc()
