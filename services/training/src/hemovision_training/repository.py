"""SQLAlchemy 2 Core queries on the `training` schema. Keyword-only arguments throughout.

Platform versions and training jobs are platform-wide (ml_engineer and platform_admin are
platform roles without an organization). Adapted versions and adaptation jobs belong to one
organization (``organization_id``): the queries that serve an organization take it and filter
by it; the platform queries filter on ``organization_id IS NULL`` / ``kind = 'training'``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from hemovision_training.tables import adaptation_inputs, audit_log, model_versions, training_jobs

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
REJECTED = "rejected"  # an adaptation the gate refused
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, REJECTED})
TRAINING, ADAPTATION = "training", "adaptation"
REGISTERED, ACTIVE, RETIRED = "registered", "active", "retired"


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    config: dict[str, Any]
    epoch: int
    total_epochs: int
    metrics: dict[str, Any]
    phase: str
    error: str
    model_name: str
    model_version: int | None
    created_by: str
    celery_task_id: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    updated_at: dt.datetime
    kind: str = TRAINING
    organization_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    training_config: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    parent_version: int | None = None
    created_by: str = ""
    job_id: str | None = None
    created_at: dt.datetime | None = None
    activated_at: dt.datetime | None = None
    was_active: bool = False
    organization_id: str | None = None
    stale: bool = False
    replaced_version: int | None = None
    deprecated_at: dt.datetime | None = None
    deprecation_reason: str = ""

    @property
    def deprecated(self) -> bool:
        return self.deprecated_at is not None


def _job(row: Any) -> Job:
    return Job(**{k: row._mapping[k] for k in Job.__dataclass_fields__})


def _version(row: Any) -> ModelVersion:
    return ModelVersion(**{k: row._mapping[k] for k in ModelVersion.__dataclass_fields__})


# ----------------------------------------------------------------------------- jobs


def insert_job(
    conn: Connection, *, job_id: str, config: dict[str, Any], model_name: str, total_epochs: int, created_by: str,
    kind: str = TRAINING, organization_id: str | None = None,
) -> Job:
    row = conn.execute(
        insert(training_jobs)
        .values(
            id=job_id,
            status=QUEUED,
            config=config,
            model_name=model_name,
            total_epochs=total_epochs,
            created_by=created_by,
            phase="queued",
            kind=kind,
            organization_id=organization_id,
        )
        .returning(*training_jobs.c)
    ).one()
    return _job(row)


def set_job_task_id(conn: Connection, *, job_id: str, task_id: str) -> None:
    conn.execute(update(training_jobs).where(training_jobs.c.id == job_id).values(celery_task_id=task_id))


def get_job(conn: Connection, *, job_id: str) -> Job | None:
    row = conn.execute(select(training_jobs).where(training_jobs.c.id == job_id)).one_or_none()
    return _job(row) if row else None


def list_jobs(conn: Connection, *, limit: int, kind: str = TRAINING, organization_id: str | None = None) -> list[Job]:
    """Platform training jobs, or (kind=adaptation) one organization's adaptations; newest first."""
    conds = [training_jobs.c.kind == kind]
    if kind == ADAPTATION:
        conds.append(training_jobs.c.organization_id == organization_id)
    rows = conn.execute(
        select(training_jobs).where(*conds).order_by(training_jobs.c.created_at.desc()).limit(limit)
    ).all()
    return [_job(r) for r in rows]


def mark_job_running(conn: Connection, *, job_id: str) -> bool:
    """queued -> running. False if the job is no longer queued (cancelled, or a redelivered task)."""
    result = conn.execute(
        update(training_jobs)
        .where(and_(training_jobs.c.id == job_id, training_jobs.c.status == QUEUED))
        .values(status=RUNNING, started_at=func.now(), heartbeat_at=func.now(), updated_at=func.now(),
                phase="loading data")
    )
    return result.rowcount == 1


def update_job_progress(
    conn: Connection,
    *,
    job_id: str,
    epoch: int | None = None,
    total_epochs: int | None = None,
    metrics: dict[str, Any] | None = None,
    phase: str | None = None,
) -> str | None:
    """Writes progress (and the heartbeat) of a running job; returns the job's status
    after the update (not "running" = cancelled or reaped: the worker must stop)."""
    values: dict[str, Any] = {"heartbeat_at": func.now(), "updated_at": func.now()}
    if epoch is not None:
        values["epoch"] = epoch
    if total_epochs is not None:
        values["total_epochs"] = total_epochs
    if metrics is not None:
        values["metrics"] = metrics
    if phase is not None:
        values["phase"] = phase
    row = conn.execute(
        update(training_jobs)
        .where(and_(training_jobs.c.id == job_id, training_jobs.c.status == RUNNING))
        .values(**values)
        .returning(training_jobs.c.status)
    ).one_or_none()
    if row is not None:
        return row.status
    return conn.execute(select(training_jobs.c.status).where(training_jobs.c.id == job_id)).scalar_one_or_none()


def touch_heartbeat(conn: Connection, *, job_id: str) -> None:
    conn.execute(
        update(training_jobs)
        .where(and_(training_jobs.c.id == job_id, training_jobs.c.status == RUNNING))
        .values(heartbeat_at=func.now())
    )


def finish_job(
    conn: Connection,
    *,
    job_id: str,
    status: str,
    error: str = "",
    phase: str = "",
    model_version: int | None = None,
    extra_metrics: dict[str, float] | None = None,
) -> bool:
    """Ends a queued/running job (never overwrites an ended one). True if this call ended it."""
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "finished_at": func.now(),
        "updated_at": func.now(),
        "phase": phase or status,
    }
    if model_version is not None:
        values["model_version"] = model_version
    if extra_metrics:
        values["metrics"] = training_jobs.c.metrics.op("||")(func.cast(extra_metrics, training_jobs.c.metrics.type))
    result = conn.execute(
        update(training_jobs)
        .where(and_(training_jobs.c.id == job_id, training_jobs.c.status.in_([QUEUED, RUNNING])))
        .values(**values)
    )
    return result.rowcount == 1


def reap_lost_jobs(conn: Connection, *, timeout_s: float) -> list[str]:
    """Fails running jobs whose heartbeat is older than timeout_s; returns their ids."""
    cutoff = func.now() - dt.timedelta(seconds=timeout_s)
    rows = conn.execute(
        update(training_jobs)
        .where(and_(training_jobs.c.status == RUNNING, training_jobs.c.heartbeat_at < cutoff))
        .values(
            status=FAILED,
            error=f"worker lost (no heartbeat for {timeout_s:g} s)",
            phase=FAILED,
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(training_jobs.c.id)
    ).all()
    return [r.id for r in rows]


def save_adaptation_cells(conn: Connection, *, job_id: str, cells_zip: bytes) -> None:
    conn.execute(insert(adaptation_inputs).values(job_id=job_id, cells_zip=cells_zip))


def adaptation_cells(conn: Connection, *, job_id: str) -> bytes | None:
    return conn.execute(select(adaptation_inputs.c.cells_zip).where(adaptation_inputs.c.job_id == job_id)
                        ).scalar_one_or_none()


def delete_ended_adaptation_cells(conn: Connection) -> int:
    """Drops the cell snapshots of every ended adaptation (the worker drops its own at the end;
    this catches a worker that died)."""
    ended = select(training_jobs.c.id).where(training_jobs.c.status.in_(sorted(TERMINAL)))
    return conn.execute(adaptation_inputs.delete().where(adaptation_inputs.c.job_id.in_(ended))).rowcount


# ----------------------------------------------------------------------------- registry


def list_versions(conn: Connection, *, name: str, organization_id: str | None = None,
                  every_organization: bool = False) -> list[ModelVersion]:
    """Platform versions plus one organization's adapted versions (or, for platform staff,
    every organization's), newest first."""
    conds = [model_versions.c.name == name]
    if not every_organization:
        scope = model_versions.c.organization_id.is_(None)
        if organization_id:
            scope = scope | (model_versions.c.organization_id == organization_id)
        conds.append(scope)
    rows = conn.execute(select(model_versions).where(*conds).order_by(model_versions.c.version.desc())).all()
    return [_version(r) for r in rows]


def get_version(conn: Connection, *, name: str, version: int) -> ModelVersion | None:
    row = conn.execute(
        select(model_versions).where(and_(model_versions.c.name == name, model_versions.c.version == version))
    ).one_or_none()
    return _version(row) if row else None


def get_active(conn: Connection, *, name: str, organization_id: str | None = None) -> ModelVersion | None:
    """The platform's active version, or (organization_id given) that organization's adapted one."""
    scope = (model_versions.c.organization_id.is_(None) if organization_id is None
             else model_versions.c.organization_id == organization_id)
    row = conn.execute(
        select(model_versions).where(model_versions.c.name == name, model_versions.c.status == ACTIVE, scope)
    ).one_or_none()
    return _version(row) if row else None


def lock_model(conn: Connection, *, name: str) -> list[ModelVersion]:
    """SELECT ... FOR UPDATE on every version row of `name` (serializes activations)."""
    rows = conn.execute(
        select(model_versions)
        .where(model_versions.c.name == name)
        .order_by(model_versions.c.version)
        .with_for_update()
    ).all()
    return [_version(r) for r in rows]


def insert_version(
    conn: Connection,
    *,
    name: str,
    version: int,
    path: str,
    metrics: dict[str, Any],
    training_config: dict[str, Any],
    data_hash: str,
    parent_version: int | None,
    created_by: str,
    job_id: str | None,
    organization_id: str | None = None,
) -> ModelVersion:
    row = conn.execute(
        insert(model_versions)
        .values(
            organization_id=organization_id,
            name=name,
            version=version,
            path=path,
            status=REGISTERED,
            metrics=metrics,
            training_config=training_config,
            data_hash=data_hash,
            parent_version=parent_version,
            created_by=created_by,
            job_id=job_id,
        )
        .returning(*model_versions.c)
    ).one()
    return _version(row)


def _scope(organization_id: str | None):
    c = model_versions.c.organization_id
    return c.is_(None) if organization_id is None else c == organization_id


def set_active(conn: Connection, *, name: str, version: int, organization_id: str | None = None,
               replaced_version: int | None = None) -> ModelVersion:
    """Retires the current active version of `name` in the version's scope (the platform, or one
    organization) and activates `version` (call under lock_model)."""
    conn.execute(
        update(model_versions)
        .where(model_versions.c.name == name, model_versions.c.status == ACTIVE, _scope(organization_id))
        .values(status=RETIRED)
    )
    values: dict[str, Any] = {"status": ACTIVE, "activated_at": func.now(), "was_active": True}
    if organization_id is not None:
        values["replaced_version"] = replaced_version
    row = conn.execute(
        update(model_versions)
        .where(model_versions.c.name == name, model_versions.c.version == version, _scope(organization_id))
        .values(**values)
        .returning(*model_versions.c)
    ).one()
    return _version(row)


def set_deprecated(conn: Connection, *, name: str, version: int, reason: str | None) -> ModelVersion:
    """Deprecates `version` with `reason`, or (reason None) restores it."""
    values: dict[str, Any] = ({"deprecated_at": func.now(), "deprecation_reason": reason} if reason is not None
                              else {"deprecated_at": None, "deprecation_reason": ""})
    row = conn.execute(
        update(model_versions)
        .where(model_versions.c.name == name, model_versions.c.version == version)
        .values(**values)
        .returning(*model_versions.c)
    ).one()
    return _version(row)


def retire_organization_version(conn: Connection, *, name: str, organization_id: str) -> ModelVersion | None:
    """Retires the organization's active adapted version (its requests go to the platform's)."""
    row = conn.execute(
        update(model_versions)
        .where(model_versions.c.name == name, model_versions.c.status == ACTIVE, _scope(organization_id))
        .values(status=RETIRED)
        .returning(*model_versions.c)
    ).one_or_none()
    return _version(row) if row else None


def mark_stale(conn: Connection, *, name: str, platform_version: int) -> int:
    """Marks every adapted version whose base is not `platform_version` stale (and un-stales the
    ones whose base it is again, after a platform rollback). Returns how many are stale now."""
    adapted = model_versions.c.organization_id.is_not(None)
    conn.execute(update(model_versions).where(model_versions.c.name == name, adapted)
                 .values(stale=model_versions.c.parent_version != platform_version))
    return int(conn.execute(select(func.count()).where(model_versions.c.name == name, adapted,
                                                       model_versions.c.stale)).scalar_one())


def max_version(conn: Connection, *, name: str) -> int:
    return int(conn.execute(select(func.coalesce(func.max(model_versions.c.version), 0)).where(
        model_versions.c.name == name)).scalar_one())


# ----------------------------------------------------------------------------- audit


def insert_audit(
    conn: Connection,
    *,
    user_id: str,
    organization_id: str,
    role: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any],
) -> int:
    return int(
        conn.execute(
            insert(audit_log)
            .values(
                user_id=user_id,
                organization_id=organization_id,
                role=role,
                action=action,
                target_type=target_type,
                target_id=target_id,
                details=details,
            )
            .returning(audit_log.c.id)
        ).scalar_one()
    )


def mark_audit_forwarded(conn: Connection, *, audit_id: int) -> None:
    conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(forwarded=True))


def list_audit(conn: Connection, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]
