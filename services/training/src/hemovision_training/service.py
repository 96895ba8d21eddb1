"""Domain logic of the training service: jobs, registry reads, activation. Knows nothing of gRPC.

Database calls are synchronous SQLAlchemy run in a worker thread (asyncio.to_thread), so the
event loop never blocks on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from sqlalchemy import Engine

from hemovision_contracts import is_platform_role
from hemovision_training import registry, rollouts
from hemovision_training import repository as repo
from hemovision_training.errors import (
    BrokerUnavailable,
    InvalidTrainingConfig,
    JobNotCancellable,
    JobNotFound,
    VersionNotFound,
)
from hemovision_training.registry import Actor, AuditEvent
from hemovision_training.settings import Settings

log = logging.getLogger(__name__)

TASK_NAME = "hemovision_training.run_training_job"
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


def job_channel(job_id: str) -> str:
    """Redis pub/sub channel on which every change of a job is announced."""
    return f"hv:training:job:{job_id}"


@dataclass(frozen=True)
class TrainingRequest:
    """The caller's training configuration, as given (0/empty = default)."""

    data_dir: str
    model_name: str = ""
    epochs: int = 0
    batch_size: int = 0
    input_size: int = 0
    seed: int = 0
    limit_per_class: int = 0
    learning_rate: float = 0.0
    auto_activate: bool = False
    parent_version: int = 0


class AuditSink(Protocol):
    async def record(self, events: list[AuditEvent], *, token: str) -> list[int]:
        """Forwards events acting with `token`; returns the ids that were delivered."""


class Enqueuer(Protocol):
    def __call__(self, job_id: str, task_name: str = TASK_NAME) -> str:
        """Puts the job on the training queue as `task_name`; returns the Celery task id."""


def validate_request(req: TrainingRequest, *, default_model_name: str) -> dict[str, Any]:
    """Checks the configuration and the data set; returns the normalized config stored with the job.
    Raises InvalidTrainingConfig with a message that says what is wrong."""
    from hemovision_training.ml.data import DatasetError, load_index  # numpy only, no TensorFlow

    name = req.model_name or default_model_name
    if not _MODEL_NAME.match(name):
        raise InvalidTrainingConfig(f"model_name {name!r} must match {_MODEL_NAME.pattern}")
    if not 1 <= req.epochs <= 500:
        raise InvalidTrainingConfig(f"epochs must be between 1 and 500 (got {req.epochs})")
    batch_size = req.batch_size or 64
    if not 1 <= batch_size <= 4096:
        raise InvalidTrainingConfig(f"batch_size must be between 1 and 4096 (got {req.batch_size})")
    input_size = req.input_size or 64
    if not 16 <= input_size <= 512:
        raise InvalidTrainingConfig(f"input_size must be between 16 and 512 pixels (got {req.input_size})")
    if req.limit_per_class < 0:
        raise InvalidTrainingConfig(f"limit_per_class must be >= 0 (got {req.limit_per_class})")
    if not (req.learning_rate >= 0 and req.learning_rate < 10):
        raise InvalidTrainingConfig(f"learning_rate must be in [0, 10) (got {req.learning_rate})")
    if req.parent_version != 0:
        # The ML pipeline trains from scratch only (no warm start yet): say so instead of ignoring it.
        raise InvalidTrainingConfig("parent_version is not supported yet: training always starts from scratch")
    if not req.data_dir:
        raise InvalidTrainingConfig("data_dir is required (an ImageFolder directory with splits.csv)")
    data_dir = Path(req.data_dir).expanduser()
    if not data_dir.is_dir():
        raise InvalidTrainingConfig(f"data_dir not found on the training host: {req.data_dir}")
    try:
        records = load_index(data_dir, limit_per_class=req.limit_per_class or None, seed=req.seed, check_files=True)
    except DatasetError as exc:
        raise InvalidTrainingConfig(f"invalid data set: {exc}") from exc
    return {
        "data_dir": str(data_dir.resolve()),
        "model_name": name,
        "epochs": req.epochs,
        "batch_size": batch_size,
        "input_size": input_size,
        "seed": req.seed,
        "limit_per_class": req.limit_per_class,
        "learning_rate": float(req.learning_rate),
        "auto_activate": bool(req.auto_activate),
        "parent_version": req.parent_version,
        "images": len(records),
    }


class TrainingService:
    """Jobs and registry behind the gRPC servicer."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        redis: aioredis.Redis,
        enqueue: Enqueuer,
        audit_sink: AuditSink,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self._enqueue = enqueue
        self._audit_sink = audit_sink

    # ------------------------------------------------------------------ db helpers

    async def _tx(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        def run() -> Any:
            with self.engine.begin() as conn:
                return fn(conn, **kwargs)

        return await asyncio.to_thread(run)

    async def _publish(self, job_id: str, status: str) -> None:
        try:
            await self.redis.publish(job_channel(job_id), json.dumps({"id": job_id, "status": status}))
        except Exception as exc:  # watchers also poll the database
            log.warning("could not publish job change: %s", exc)

    # ------------------------------------------------------------------ jobs

    async def start_job(self, actor: Actor, req: TrainingRequest) -> repo.Job:
        config = await asyncio.to_thread(validate_request, req, default_model_name=self.settings.model_name)
        job_id = str(uuid.uuid4())

        def insert(conn) -> list[AuditEvent]:
            repo.insert_job(conn, job_id=job_id, config=config, model_name=config["model_name"],
                            total_epochs=config["epochs"], created_by=actor.user_id)
            return [_job_event(conn, actor, "training.start", job_id, {"config": config})]

        events = await self._tx(insert)
        await self.enqueue_job(job_id)
        await self._forward_audit(events, token=actor.token)
        log.info("training job queued", extra={"job_id": job_id, "user": actor.user_id})
        return await self.get_job(job_id)

    async def enqueue_job(self, job_id: str, *, task_name: str = TASK_NAME) -> None:
        """Puts an inserted (queued) job on the Celery queue; a broker failure fails the job."""
        try:
            task_id = await asyncio.to_thread(self._enqueue, job_id, task_name)
        except Exception as exc:
            log.error("could not enqueue job %s: %s", job_id, exc)
            await self._tx(repo.finish_job, job_id=job_id, status=repo.FAILED, error="could not enqueue: broker unavailable")
            raise BrokerUnavailable("the training queue (Redis) is unavailable; try again later") from exc
        await self._tx(repo.set_job_task_id, job_id=job_id, task_id=task_id)
        await self._publish(job_id, repo.QUEUED)

    async def get_job(self, job_id: str, *, kind: str | None = None) -> repo.Job:
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise JobNotFound(job_id) from None
        job = await self._tx(repo.get_job, job_id=job_id)
        if job is None or (kind is not None and job.kind != kind):
            raise JobNotFound(job_id)
        return job

    async def list_jobs(self, limit: int) -> list[repo.Job]:
        limit = 50 if limit <= 0 else min(limit, 500)
        return await self._tx(repo.list_jobs, limit=limit)

    async def cancel_job(self, actor: Actor, job_id: str, revoke: Callable[[str], None] | None = None) -> repo.Job:
        job = await self.get_job(job_id)
        if job.terminal:
            raise JobNotCancellable(f"training job {job_id} already {job.status}")
        def finish(conn) -> list[AuditEvent] | None:
            if not repo.finish_job(conn, job_id=job_id, status=repo.CANCELLED, error=f"cancelled by {actor.user_id}"):
                return None
            return [_job_event(conn, actor, "training.cancel", job_id, {"was": job.status, "epoch": job.epoch})]

        events = await self._tx(finish)
        if events is None:
            job = await self.get_job(job_id)
            raise JobNotCancellable(f"training job {job_id} already {job.status}")
        await self._forward_audit(events, token=actor.token)
        # A queued task is dropped by the worker (it only starts queued jobs); a running one stops
        # at its next epoch, when it sees the job is no longer running.
        if revoke is not None and job.celery_task_id:
            try:
                await asyncio.to_thread(revoke, job.celery_task_id)
            except Exception as exc:
                log.warning("could not revoke task %s: %s", job.celery_task_id, exc)
        await self._publish(job_id, repo.CANCELLED)
        log.info("training job cancelled", extra={"job_id": job_id, "user": actor.user_id})
        return await self.get_job(job_id)

    async def watch_job(self, job_id: str) -> AsyncIterator[repo.Job]:
        """The current state at once, then every change until the job ends. Changes arrive on the
        job's pub/sub channel; the database is also re-read every watch_poll_s (a lost message
        or a reaped worker is still seen) and the state is re-sent at least that often (heartbeat)."""
        job = await self.get_job(job_id)
        pubsub = self.redis.pubsub()
        subscribed = True
        try:
            try:
                await pubsub.subscribe(job_channel(job_id))
            except Exception as exc:  # Redis down: the stream still works, by polling the database
                log.warning("pub/sub unavailable, polling job %s: %s", job_id, exc)
                subscribed = False
            job = await self.get_job(job_id)  # re-read after subscribing: no change can slip between
            yield job
            last = (job.status, job.epoch, job.phase, job.updated_at)
            last_sent = time.monotonic()
            while not job.terminal:
                try:
                    if not subscribed:
                        raise ConnectionError("not subscribed")
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.settings.watch_poll_s)
                except Exception as exc:  # Redis hiccup: keep polling the database
                    if subscribed:
                        log.warning("pub/sub read failed: %s", exc)
                    await asyncio.sleep(min(1.0, self.settings.watch_poll_s))
                job = await self.get_job(job_id)
                state = (job.status, job.epoch, job.phase, job.updated_at)
                if state != last or time.monotonic() - last_sent >= self.settings.watch_poll_s:
                    yield job
                    last, last_sent = state, time.monotonic()
        finally:
            try:
                await pubsub.unsubscribe()
                await pubsub.aclose()
            except Exception:
                pass

    async def reap_lost_jobs(self) -> list[str]:
        reaped = await self._tx(repo.reap_lost_jobs, timeout_s=self.settings.heartbeat_timeout_s)
        for job_id in reaped:
            log.warning("training job %s failed: worker lost", job_id)
            await self._publish(job_id, repo.FAILED)
        return reaped

    async def run_reaper(self) -> None:
        while True:
            try:
                await self.reap_lost_jobs()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reaper pass failed: %s", exc)
            await asyncio.sleep(self.settings.reaper_interval_s)

    # ------------------------------------------------------------------ registry

    def _name(self, name: str) -> str:
        return name or self.settings.model_name

    async def list_versions(self, actor: Actor, name: str) -> list[repo.ModelVersion]:
        """Platform versions and the caller's organization's adapted ones; platform staff see every
        organization's adapted versions (metadata and metrics, never their cells)."""
        return await self._tx(repo.list_versions, name=self._name(name), organization_id=actor.organization_id,
                              every_organization=is_platform_role(actor.role))

    async def get_version(self, actor: Actor, name: str, version: int) -> repo.ModelVersion:
        row = await self._tx(repo.get_version, name=self._name(name), version=version)
        if row is None or not (row.organization_id is None or row.organization_id == actor.organization_id
                               or is_platform_role(actor.role)):
            raise VersionNotFound(self._name(name), version)
        return row

    async def get_active(self, name: str) -> repo.ModelVersion:
        row = await self._tx(repo.get_active, name=self._name(name))
        if row is None:
            raise VersionNotFound(self._name(name))
        return row

    async def activate(self, actor: Actor, name: str, version: int, *, force: bool, reason: str) -> repo.ModelVersion:
        result = await self._tx(
            registry.activate,
            name=self._name(name),
            version=version,
            actor=actor,
            ece_limit=self.settings.ece_limit,
            force=force,
            reason=reason,
        )
        if result.events:
            await self._forward_audit(result.events, token=actor.token)
            await rollouts.announce_ended(self.redis, result.events, self._name(name))
        return result.version

    async def deprecate(self, actor: Actor, name: str, version: int, *, reason: str,
                        restore: bool) -> repo.ModelVersion:
        result = await self._tx(registry.deprecate, name=self._name(name), version=version, actor=actor,
                                reason=reason, restore=restore)
        if result.events:
            await self._forward_audit(result.events, token=actor.token)
            await rollouts.announce_ended(self.redis, result.events, self._name(name))
            await self._announce_organization_moves(result.events)
        return result.version

    async def _announce_organization_moves(self, events: list[AuditEvent]) -> None:
        """A retired adapted version moved its organization back onto an older adapted version:
        inference replicas pre-load that one (best effort; they also follow the registry within
        their reconcile interval, which is how a move to the platform's version arrives)."""
        from hemovision_contracts import ORGANIZATION_VERSION_CHANNEL, organization_version_event

        for event in events:
            now_on = event.details.get("organization_now_on")
            if isinstance(now_on, int):
                try:
                    await self.redis.publish(ORGANIZATION_VERSION_CHANNEL,
                                             organization_version_event(event.details["organization_id"], now_on))
                except Exception as exc:
                    log.warning("could not announce the organization's version: %s", exc)

    async def _forward_audit(self, events: list[AuditEvent], *, token: str) -> None:
        """The rows are already in training.audit_log (same transaction as the change); history
        gets a copy acting as the caller. A failure there is logged, never fails the call."""
        try:
            delivered = await self._audit_sink.record(events, token=token)
        except Exception as exc:
            log.warning("audit events not forwarded to history: %s", exc)
            return
        for audit_id in delivered:
            await self._tx(repo.mark_audit_forwarded, audit_id=audit_id)


def _job_event(conn, actor: Actor, action: str, job_id: str, details: dict[str, Any]) -> AuditEvent:
    """An audit row for a training job, in the caller's transaction (forwarded to history after)."""
    audit_id = repo.insert_audit(conn, user_id=actor.user_id, organization_id=actor.organization_id,
                                 role=actor.role, action=action, target_type="training_job", target_id=job_id,
                                 details=details)
    return AuditEvent(id=audit_id, action=action, target_type="training_job", target_id=job_id, details=details)
