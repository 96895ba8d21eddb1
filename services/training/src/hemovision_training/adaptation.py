""""Adapt to our lab": one organization's adaptation jobs, its serving version and its rollback.

An adaptation is a training job of kind ``adaptation`` (same table, lifecycle, heartbeat, reaper
and cancellation as a training job) scoped to one organization. At start the organization's
reviewed cells are read from history *acting as the caller* (ExportReviewedDataset: the stored
model images and their labels) and kept with the job in the database, so the worker needs no
credentials and no disk shared with the service, and the job trains on a fixed snapshot. The
worker (adaptation_task.py) fine-tunes the platform's active version on them (ml/adapt.py) and,
if the gate accepts, registers the result as the organization's active version in one transaction.

Privacy: every read here is filtered by the caller's organization; another organization's
adaptation is NOT_FOUND, exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
import dataclasses
import csv
import io
import json
import logging
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hemovision_training import repository as repo
from hemovision_training.errors import JobNotCancellable, JobNotFound, VersionNotFound
from hemovision_training.registry import Actor, AuditEvent, _audit
from hemovision_training.service import TrainingService

log = logging.getLogger(__name__)

ADAPT_TASK_NAME = "hemovision_training.run_adaptation"


class NotEnoughCells(Exception):
    pass


class CellSource(Protocol):
    async def reviewed_cells(self, *, token: str) -> bytes:
        """The caller's organization's reviewed cells as history's export ZIP."""


@dataclass(frozen=True)
class OrganizationModel:
    organization_id: str
    model_name: str
    version: int
    adapted: bool
    platform_version: int
    stale: bool


@dataclass(frozen=True)
class LabCells:
    images: np.ndarray          # uint8 [N, S, S, 3] model images
    labels: np.ndarray          # int32 class indices
    other_spec: int             # reviewed cells classified under another preprocessing (not usable)


def read_cells(data: bytes, *, model_name: str, spec: dict[str, Any], spec_of: Callable[[int], dict | None],
               class_names: list[str]) -> LabCells:
    """The usable cells of an export ZIP: classified by a version of `model_name` whose
    preprocessing spec is `spec` (so the stored image is what the base would have been given)."""
    from PIL import Image

    size = int(spec["input_size"])
    images, labels, other = [], [], 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("splits.csv").decode())))
        for r in rows:
            version = int(r.get("version") or 0)
            if r.get("model") != model_name or spec_of(version) != spec or r["label"] not in class_names:
                other += 1
                continue
            with Image.open(io.BytesIO(archive.read(r["path"]))) as im:
                arr = np.asarray(im.convert("RGB"))
            if arr.shape != (size, size, 3):
                other += 1
                continue
            images.append(arr)
            labels.append(class_names.index(r["label"]))
    return LabCells(images=np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
                    labels=np.array(labels, np.int32), other_spec=other)


def version_spec(model_base: str | Path, name: str, version: int) -> dict | None:
    try:
        meta = json.loads((Path(model_base) / name / str(version) / "assets.extra" / "hemovision.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("preprocessing")


class AdaptationService:
    """Adaptations and the organization's serving version, behind the gRPC servicer."""

    def __init__(self, training: TrainingService, *, cells: CellSource) -> None:
        self.training = training
        self.settings = training.settings
        self.cells = cells
        self._specs: dict[tuple[str, int], dict | None] = {}

    def _spec_of(self, name: str) -> Callable[[int], dict | None]:
        def spec(version: int) -> dict | None:
            key = (name, version)
            if key not in self._specs:  # a published version never changes
                self._specs[key] = version_spec(self.settings.model_base, name, version)
            return self._specs[key]
        return spec

    async def start(self, actor: Actor, model_name: str) -> repo.Job:
        from hemovision_training.errors import AdaptationRefused
        from hemovision_training.ml.adapt import MIN_CELLS, AdaptConfig
        from hemovision_training.ml.data import CLASS_NAMES

        name = self.training._name(model_name)
        org = actor.organization_id
        if not org:
            raise AdaptationRefused("adaptation is for an organization's own cells, and your account belongs to "
                                    "none (platform staff); an org_admin of the organization starts it")
        base = await self.training._tx(repo.get_active, name=name)
        if base is None:
            raise AdaptationRefused(f"model {name!r} has no active platform version to adapt")
        running = [j for j in await self.training._tx(repo.list_jobs, limit=20, kind=repo.ADAPTATION,
                                                        organization_id=org) if not j.terminal]
        if running:
            raise AdaptationRefused(f"an adaptation is already {running[0].status} for your organization "
                                    f"({running[0].id}); wait for it or cancel it")
        spec = self._spec_of(name)(base.version)
        if spec is None:
            raise AdaptationRefused(f"model {name!r} version {base.version} is not readable on the training host")
        try:
            data = await asyncio.wait_for(self.cells.reviewed_cells(token=actor.token),
                                          timeout=self.settings.cells_timeout_s)
        except TimeoutError:
            from hemovision_grpc_server import Unavailable
            raise Unavailable("reading the reviewed cells from history timed out; try again") from None
        cells = await asyncio.to_thread(read_cells, data, model_name=name, spec=spec, spec_of=self._spec_of(name),
                                        class_names=list(CLASS_NAMES))
        if len(cells.labels) < MIN_CELLS:
            extra = (f" ({cells.other_spec} more were classified with another preprocessing and cannot be used)"
                     if cells.other_spec else "")
            raise AdaptationRefused(f"adaptation needs at least {MIN_CELLS} reviewed cells; your organization has "
                                    f"{len(cells.labels)} usable{extra}. Review more cells and try again.")
        current = await self.training._tx(repo.get_active, name=name, organization_id=org)
        cfg = AdaptConfig(**{k: v for k, v in self.settings.adapt_overrides.items()
                             if k in AdaptConfig.__dataclass_fields__})
        job_id = str(uuid.uuid4())
        config = {"model_name": name, "base_version": base.version,
                  "previous_version": current.version if current else 0,
                  "cells": int(len(cells.labels)), "cells_other_spec": cells.other_spec,
                  "class_counts": {CLASS_NAMES[c]: int((cells.labels == c).sum()) for c in np.unique(cells.labels)},
                  "recipe": dataclasses.asdict(cfg)}
        def insert(conn) -> repo.Job:  # the job and its cells in one transaction
            repo.delete_ended_adaptation_cells(conn)
            job = repo.insert_job(conn, job_id=job_id, config=config, model_name=name, total_epochs=cfg.epochs,
                                  created_by=actor.user_id, kind=repo.ADAPTATION, organization_id=org)
            repo.save_adaptation_cells(conn, job_id=job_id, cells_zip=data)
            return job

        job = await self.training._tx(insert)
        await self.training.enqueue_job(job_id, task_name=ADAPT_TASK_NAME)
        events = await self.training._tx(_audit_job, actor=actor, action="model.adaptation.start", job=job)
        await self.training._forward_audit(events, token=actor.token)
        log.info("adaptation queued", extra={"job_id": job_id, "organization_id": org, "cells": len(cells.labels)})
        return await self.get(actor, job_id)

    async def get(self, actor: Actor, job_id: str) -> repo.Job:
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise JobNotFound(job_id) from None
        job = await self.training._tx(repo.get_job, job_id=job_id)
        if job is None or job.kind != repo.ADAPTATION or job.organization_id != actor.organization_id:
            raise JobNotFound(job_id)  # another organization's looks exactly like none
        return job

    async def list(self, actor: Actor, limit: int) -> list[repo.Job]:
        limit = 50 if limit <= 0 else min(limit, 200)
        return await self.training._tx(repo.list_jobs, limit=limit, kind=repo.ADAPTATION,
                                       organization_id=actor.organization_id)

    async def cancel(self, actor: Actor, job_id: str, revoke: Callable[[str], None] | None = None) -> repo.Job:
        job = await self.get(actor, job_id)
        if job.terminal:
            raise JobNotCancellable(f"adaptation {job_id} already {job.status}")
        return await self.training.cancel_job(actor, job_id, revoke=revoke)

    async def organization_model(self, actor: Actor, model_name: str) -> OrganizationModel:
        name = self.training._name(model_name)
        platform = await self.training._tx(repo.get_active, name=name)
        own = await self.training._tx(repo.get_active, name=name, organization_id=actor.organization_id)
        if platform is None and own is None:
            raise VersionNotFound(name)
        return OrganizationModel(organization_id=actor.organization_id, model_name=name,
                                 version=(own or platform).version, adapted=own is not None,
                                 platform_version=platform.version if platform else 0,
                                 stale=bool(own and own.stale))

    async def rollback(self, actor: Actor, model_name: str) -> OrganizationModel:
        from hemovision_training.errors import AdaptationRefused

        name = self.training._name(model_name)
        org = actor.organization_id

        def run(conn) -> list[AuditEvent]:
            repo.lock_model(conn, name=name)
            current = repo.get_active(conn, name=name, organization_id=org)
            if current is None:
                raise AdaptationRefused("your organization uses the platform's version: there is nothing to roll back")
            back = current.replaced_version
            target = repo.get_version(conn, name=name, version=back) if back else None
            if target is not None and target.organization_id == org and not target.deprecated:
                updated = repo.set_active(conn, name=name, version=target.version, organization_id=org,
                                          replaced_version=target.replaced_version)
            else:
                repo.retire_organization_version(conn, name=name, organization_id=org)
                updated = current
            details = {"name": name, "from_version": current.version,
                       "to_version": target.version if target is not None else "platform"}
            return [_audit(conn, actor, "model.adaptation.rollback", updated, details)]

        events = await self.training._tx(run)
        await self.training._forward_audit(events, token=actor.token)
        log.info("organization rolled back", extra={"organization_id": org, "details": events[0].details})
        back_to = events[0].details["to_version"]
        if isinstance(back_to, int):
            await self._announce(org, back_to)
        return await self.organization_model(actor, name)

    async def _announce(self, org: str, version: int) -> None:
        """Inference replicas pre-load the organization's version (best effort)."""
        from hemovision_contracts import ORGANIZATION_VERSION_CHANNEL, organization_version_event

        try:
            await self.training.redis.publish(ORGANIZATION_VERSION_CHANNEL, organization_version_event(org, version))
        except Exception as exc:
            log.warning("could not announce the organization's version: %s", exc)


def _audit_job(conn, *, actor: Actor, action: str, job: repo.Job) -> list[AuditEvent]:
    from hemovision_training.repository import insert_audit

    details = {"job_id": job.id, "base_version": job.config.get("base_version"), "cells": job.config.get("cells")}
    audit_id = insert_audit(conn, user_id=actor.user_id, organization_id=actor.organization_id, role=actor.role,
                            action=action, target_type="adaptation", target_id=job.id, details=details)
    return [AuditEvent(id=audit_id, action=action, target_type="adaptation", target_id=job.id, details=details)]
