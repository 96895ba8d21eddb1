"""The Celery app and the training task (queue `training`, one job at a time per worker).

    python -m hemovision_training worker      # = celery -A hemovision_training.tasks worker -Q training -c 1

Delivery choice: ``task_acks_late=True`` + ``task_reject_on_worker_lost=True`` so a job whose
message was received but whose worker died before starting it is redelivered rather than lost.
A redelivered message can never train twice: the task only starts a job that is still
``queued`` (``UPDATE ... WHERE status='queued'``), so a job that had started on a worker that
died (its message comes back after ``broker_visibility_timeout_s``, 24 h) is left to the reaper in the service, which marks it failed ("worker lost (no heartbeat
for N s)"). A failure is final and visible; retraining is a new, explicit job.

Progress: after every epoch the task writes epoch/metrics/phase/heartbeat to
training.training_jobs and publishes on Redis channel ``hv:training:job:<id>``; a thread also
refreshes ``heartbeat_at`` every ``heartbeat_interval_s`` (long evaluation/export phases).
Cancellation is cooperative: the progress update returns the job's status, and anything but
``running`` (cancelled by a user, or reaped) stops the run at that epoch boundary.

Publishing: train() exports the SavedModel atomically (temp dir + rename) as version N+1, then
the task registers it and ends the job in ONE transaction. If that transaction fails the
exported directory is removed, so nothing is half-registered. If the worker dies between the
rename and the commit, the directory stays published but unregistered; `python -m
hemovision_training register-existing` registers it (inactive) from its hemovision.json.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from hemovision_training import registry
from hemovision_training import repository as repo
from hemovision_training.registry import Actor
from hemovision_training.service import TASK_NAME, job_channel
from hemovision_training.settings import Settings
from hemovision_telemetry import trace_celery_worker
from hemovision_telemetry.celery_metrics import serve_celery_metrics

log = logging.getLogger(__name__)


def make_celery(redis_url: str, queue: str = "training", visibility_timeout_s: float = 24 * 3600.0) -> Celery:
    app = Celery("hemovision_training", broker=redis_url)
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # Long training runs: a message is only redelivered after this long without an ack.
        broker_transport_options={"visibility_timeout": visibility_timeout_s},
        worker_hijack_root_logger=False,
    )
    return app


settings = Settings()
app = make_celery(settings.redis_url, settings.queue, settings.broker_visibility_timeout_s)
# A job's task continues the trace of the request that started it (traceparent in the task headers).
trace_celery_worker("training-worker")
# Its tasks' RED on its own port; the job runs in a prefork child (hemovision_telemetry.celery_metrics).
serve_celery_metrics(app, "training-worker", settings.worker_metrics_port, host=settings.host)

_engine = None
_redis = None


def _db():
    global _engine
    if _engine is None:
        from hemovision_database import create_db_engine

        _engine = create_db_engine(settings.database_url, pool_size=2)
    return _engine


def _publish(job_id: str, status: str) -> None:
    global _redis
    try:
        if _redis is None:
            import redis

            _redis = redis.Redis.from_url(settings.redis_url)
        _redis.publish(job_channel(job_id), json.dumps({"id": job_id, "status": status}))
    except Exception as exc:  # watchers also poll the database
        log.warning("could not publish job change: %s", exc)


def _announce_organization_version(organization_id: str, version: int) -> None:
    """Tells inference replicas to pre-load an organization's newly activated version (best effort)."""
    from hemovision_contracts import ORGANIZATION_VERSION_CHANNEL, organization_version_event

    global _redis
    try:
        if _redis is None:
            import redis

            _redis = redis.Redis.from_url(settings.redis_url)
        _redis.publish(ORGANIZATION_VERSION_CHANNEL, organization_version_event(organization_id, version))
    except Exception as exc:  # inference then loads it on the organization's first request
        log.warning("could not announce the organization's new version: %s", exc)


@worker_process_init.connect
def _reset_connections(**_: Any) -> None:
    global _engine, _redis
    _engine, _redis = None, None


class JobStopped(Exception):
    """The job is no longer running (cancelled or reaped): stop training."""


class _Heartbeat(threading.Thread):
    def __init__(self, job_id: str, interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id[:8]}")
        self.job_id, self.interval, self.stopped = job_id, interval, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with _db().begin() as conn:
                    repo.touch_heartbeat(conn, job_id=self.job_id)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)


def _set_phase(job_id: str, phase: str, **kwargs: Any) -> str | None:
    with _db().begin() as conn:
        status = repo.update_job_progress(conn, job_id=job_id, phase=phase, **kwargs)
    _publish(job_id, status or "")
    return status


def _finish(job_id: str, status: str, error: str = "") -> None:
    with _db().begin() as conn:
        repo.finish_job(conn, job_id=job_id, status=status, error=error)
    _publish(job_id, status)


def _next_version(name: str) -> int:
    from hemovision_training.ml.export import existing_versions

    with _db().begin() as conn:
        registered = repo.max_version(conn, name=name)
    on_disk = max(existing_versions(Path(settings.model_base) / name), default=0)
    return max(registered, on_disk) + 1


def run_job(job_id: str, what: str, body, *, stopped: tuple = (), describe=None, after=None) -> None:
    """The lifecycle every job task shares: start only a queued job, heartbeat while ``body(job_id)``
    runs, a stop (cancelled or reaped) ends quietly, any other error fails the job with
    ``describe(exc)`` (default: its type and message); ``after()`` runs last, whatever happened."""
    with _db().begin() as conn:
        started = repo.mark_job_running(conn, job_id=job_id)
    if not started:
        log.info("%s %s is not queued (cancelled, or a redelivered message): skipping", what, job_id)
        return
    _publish(job_id, repo.RUNNING)
    heartbeat = _Heartbeat(job_id, settings.heartbeat_interval_s)
    heartbeat.start()
    try:
        body(job_id)
    except (JobStopped, *stopped):
        log.info("%s %s stopped: no longer running", what, job_id)
        _publish(job_id, "stopped")
    except Exception as exc:
        error = describe(exc) if describe is not None else None
        if error is None:
            log.exception("%s %s failed", what, job_id)
            error = f"{type(exc).__name__}: {exc}"
        _finish(job_id, repo.FAILED, error=error[:2000])
    finally:
        heartbeat.stopped.set()
        if after is not None:
            after()


def _dataset_error(exc: Exception) -> str | None:
    from hemovision_training.ml.data import DatasetError

    return f"invalid data set: {exc}" if isinstance(exc, DatasetError) else None


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_training_job(self, job_id: str) -> None:
    run_job(job_id, "training job", _run, describe=_dataset_error)


def _run(job_id: str) -> None:
    with _db().begin() as conn:
        job = repo.get_job(conn, job_id=job_id)
    assert job is not None
    c = job.config
    name = job.model_name

    def progress(epoch: int, total: int, metrics: dict) -> None:
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        status = _set_phase(job_id, f"epoch {epoch}/{total}", epoch=epoch, total_epochs=total, metrics=scalars)
        if status != repo.RUNNING:
            raise JobStopped(status)

    from hemovision_training.ml.train import TrainConfig, train

    version = _next_version(name)
    work = Path(settings.work_dir)
    kwargs: dict[str, Any] = {
        "data_dir": c["data_dir"],
        "out_dir": str(work / "jobs" / job_id),
        "cache_dir": str(work / "cache"),
        "epochs": int(c["epochs"]),
        "batch_size": int(c["batch_size"]),
        "input_size": int(c["input_size"]),
        "seed": int(c["seed"]),
        "limit_per_class": int(c["limit_per_class"]) or None,
        "model_base": settings.model_base,
        "model_name": name,
        "version": version,
    }
    if c.get("learning_rate"):
        kwargs["learning_rate"] = float(c["learning_rate"])
    for key, value in settings.train_overrides.items():
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    fields = set(TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(**{k: v for k, v in kwargs.items() if k in fields})
    result = train(cfg, progress)

    export_path = result.get("export_path")
    if not export_path:
        raise RuntimeError("training finished without an exported model")
    try:
        if _set_phase(job_id, "registering") != repo.RUNNING:
            raise JobStopped("cancelled during evaluation/export")
        _register(job, version=version, path=Path(export_path), result=result)
    except BaseException:
        # Nothing half-registered: the registration rolled back, so take the export down too.
        shutil.rmtree(export_path, ignore_errors=True)
        raise
    _publish(job_id, repo.SUCCEEDED)
    drift.publish_version(settings.redis_url, name, version, export_path)


def _register(job: repo.Job, *, version: int, path: Path, result: dict[str, Any]) -> None:
    """Registers the version, optionally activates it behind the gate, ends the job: one transaction."""
    actor = Actor(user_id=job.created_by, role="")
    c = job.config
    phase = "succeeded"
    with _db().begin() as conn:
        row, _ = registry.register_version(
            conn,
            name=job.model_name,
            version=version,
            path=str(path.resolve()),
            metrics=result.get("metrics") or {},
            training_config=c,
            data_hash=str(result.get("data_hash") or ""),
            parent_version=None,
            created_by=job.created_by,
            job_id=job.id,
            actor=actor,
        )
        if c.get("auto_activate"):
            active = repo.get_active(conn, name=job.model_name)
            gate = registry.check_gate(row, active, ece_limit=settings.ece_limit)
            if gate.passed:
                registry.activate(conn, name=job.model_name, version=version,
                                  actor=Actor.system(f"auto-activate:{job.created_by}"),
                                  ece_limit=settings.ece_limit, reason=f"auto_activate (job {job.id})")
                phase = "succeeded (activated)"
            else:
                phase = "succeeded (not activated: " + "; ".join(gate.reasons) + ")"
        test = {f"test_{k}": row.metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece")
                if k in row.metrics}
        if not repo.finish_job(conn, job_id=job.id, status=repo.SUCCEEDED, phase=phase[:200], model_version=version,
                               extra_metrics=test):
            raise JobStopped("job ended while registering")


# The adaptation task shares this app, its queue and the helpers above.
from hemovision_training import adaptation_task  # noqa: E402,F401
from hemovision_training import drift  # noqa: E402
