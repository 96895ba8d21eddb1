"""The adaptation task (queue `training`): fine-tune, gate, and publish one organization's version.

Same delivery rules as the training task (tasks.py): it only starts a queued job, progress and
heartbeat go to the job row, and cancellation is seen at each epoch. On acceptance the version
is exported atomically, then registered *and* made the organization's active version *and* the
job ended in one transaction; if that transaction fails the export is removed again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from hemovision_training import drift
from hemovision_training import repository as repo
from hemovision_training.adaptation import ADAPT_TASK_NAME, read_cells, version_spec
from hemovision_training.registry import Actor, _audit, register_version
from hemovision_training.tasks import (
    JobStopped,
    _announce_organization_version,
    _db,
    _next_version,
    _publish,
    _set_phase,
    app,
    run_job,
    settings,
)

log = logging.getLogger(__name__)


@app.task(name=ADAPT_TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_adaptation(self, job_id: str) -> None:
    from hemovision_training.ml.adapt import AdaptationCancelled

    run_job(job_id, "adaptation", _run, stopped=(AdaptationCancelled,), after=_drop_ended_cells)


def _drop_ended_cells() -> None:
    try:  # the organization's cells live in history, not here
        with _db().begin() as conn:
            repo.delete_ended_adaptation_cells(conn)
    except Exception as exc:
        log.warning("could not drop ended adaptations' cells: %s", exc)


def _run(job_id: str) -> None:
    from hemovision_training.ml.adapt import AdaptConfig, adapt, export_adapted
    from hemovision_training.ml.data import CLASS_NAMES

    with _db().begin() as conn:
        job = repo.get_job(conn, job_id=job_id)
    assert job is not None and job.organization_id
    c, name, org = job.config, job.model_name, job.organization_id
    base_version = int(c["base_version"])
    model_dir = Path(settings.model_base) / name
    spec = version_spec(settings.model_base, name, base_version)
    if spec is None:
        raise RuntimeError(f"base version {base_version} is not readable under {model_dir}")
    _set_phase(job_id, "reading cells")
    with _db().begin() as conn:
        data = repo.adaptation_cells(conn, job_id=job_id)
    if data is None:
        raise RuntimeError("the adaptation's cell snapshot is missing")
    cells = read_cells(data, model_name=name, spec=spec, spec_of=lambda v: version_spec(settings.model_base, name, v),
                       class_names=list(CLASS_NAMES))
    with _db().begin() as conn:
        current = repo.get_active(conn, name=name, organization_id=org)
    # The gate compares with what serves the organization now: its adapted version when it takes
    # the same input as the base, else the base itself.
    current_dir = None
    if current is not None and version_spec(settings.model_base, name, current.version) == spec:
        current_dir = model_dir / str(current.version)

    def progress(epoch: int, total: int, row: dict) -> None:
        status = _set_phase(job_id, f"epoch {epoch}/{total}", epoch=epoch, total_epochs=total,
                            metrics={k: float(v) for k, v in row.items() if isinstance(v, (int, float))})
        if status != repo.RUNNING:
            raise JobStopped(status)

    cfg = AdaptConfig(**c.get("recipe", {}))
    result = adapt(model_dir / str(base_version), cells.images, cells.labels, data_dir=settings.replay_data_dir,
                   cfg=cfg, current_dir=current_dir, progress=progress)
    gate = result.gate
    figures: dict[str, Any] = {k: gate[k] for k in ("holdout_cells", "holdout_accuracy_before", "holdout_accuracy_after",
                                                   "pbc_val_accuracy_before", "pbc_val_accuracy_after", "p_value",
                                                   "wins", "losses")}
    figures["gate_reasons"] = gate["reasons"]
    figures["seconds"] = round(result.training_info["seconds"], 1)
    if _set_phase(job_id, "gate") != repo.RUNNING:
        raise JobStopped("cancelled after fine-tuning")
    if not gate["accepted"]:
        with _db().begin() as conn:
            repo.finish_job(conn, job_id=job_id, status=repo.REJECTED, extra_metrics=figures,
                            phase=("rejected: " + "; ".join(gate["reasons"]))[:200])
        _publish(job_id, repo.REJECTED)
        return
    result.training_info.update({"organization_id": org, "job_id": job_id, "created_by": job.created_by,
                                 "parent_version": base_version})
    version = _next_version(name)
    path = export_adapted(result, model_base=settings.model_base, organization_id=org, version=version)
    try:
        _publish_version(job, version=version, path=path, base_version=base_version, figures=figures,
                         metrics=result.metrics)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    _publish(job_id, repo.SUCCEEDED)
    _announce_organization_version(org, version)
    drift.publish_version(settings.redis_url, name, version, path)


def _publish_version(job: repo.Job, *, version: int, path: Path, base_version: int, figures: dict[str, Any],
                     metrics: dict[str, Any]) -> None:
    """Register as the organization's version, make it its active one, end the job: one transaction."""
    org = job.organization_id
    actor = Actor(user_id=job.created_by, organization_id=org or "", role="")
    with _db().begin() as conn:
        repo.lock_model(conn, name=job.model_name)
        previous = repo.get_active(conn, name=job.model_name, organization_id=org)
        row, _ = register_version(conn, name=job.model_name, version=version, path=str(path.resolve()),
                                  metrics=metrics, training_config=job.config, data_hash="",
                                  parent_version=base_version, created_by=job.created_by, job_id=job.id,
                                  actor=actor, organization_id=org)
        updated = repo.set_active(conn, name=job.model_name, version=version, organization_id=org,
                                  replaced_version=previous.version if previous else None)
        platform = repo.get_active(conn, name=job.model_name)
        if platform is not None:
            repo.mark_stale(conn, name=job.model_name, platform_version=platform.version)
        _audit(conn, actor, "model.adaptation.activate", updated,
               {"name": job.model_name, "version": version, "base_version": base_version,
                "previous_version": previous.version if previous else None, "job_id": job.id,
                "gate": {k: v for k, v in figures.items() if k != "seconds"}})
        if not repo.finish_job(conn, job_id=job.id, status=repo.SUCCEEDED, model_version=version,
                               extra_metrics=figures, phase="succeeded (your organization's version now)"):
            raise JobStopped("job ended while registering")
