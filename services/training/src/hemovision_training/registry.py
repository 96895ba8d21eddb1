"""The model registry's rules: registration, the quality gate, activation and rollback.

Every version is scored once, at registration, on the frozen test split; the gate compares
those numbers and nothing else:

* refused when the candidate's macro_f1 is below the active version's, or its ECE (15 bins,
  calibrated probabilities) is above ``ece_limit`` -- FAILED_PRECONDITION with the numbers;
* ``force`` (platform_admin only) skips the gate and is audited as ``model.activate.force``;
* a version that was active before (``was_active``) may always be re-activated: a rollback,
  audited as ``model.rollback``;
* activations of one model are serialized by ``SELECT ... FOR UPDATE`` on its rows; the
  partial unique index ``uq_model_versions_one_active`` makes two actives impossible anyway.

The functions here run inside a caller's transaction and return the audit events they wrote
(training.audit_log, same transaction) so the caller can forward them to the history service
after commit.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from hemovision_contracts import PLATFORM_ADMIN
from hemovision_training import repository as repo
from hemovision_training.errors import (
    ForbiddenForRole, InvalidTrainingConfig, QualityGateRefused, VersionDeprecated, VersionNotFound,
)

log = logging.getLogger(__name__)

METADATA_RELPATH = Path("assets.extra") / "hemovision.json"


@dataclass(frozen=True)
class Actor:
    """Who acts: a verified caller, or the system (worker auto-activation, register-existing)."""

    user_id: str
    organization_id: str = ""
    role: str = ""
    token: str = ""

    @classmethod
    def system(cls, what: str) -> "Actor":
        return cls(user_id=f"system:{what}", role="system")


@dataclass(frozen=True)
class AuditEvent:
    id: int
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]
    candidate_macro_f1: float | None
    candidate_ece: float | None
    active_version: int | None
    active_macro_f1: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "candidate_macro_f1": self.candidate_macro_f1,
            "candidate_ece": self.candidate_ece,
            "active_version": self.active_version,
            "active_macro_f1": self.active_macro_f1,
        }


# ----------------------------------------------------------------------------- metrics


def flatten_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The registry's metrics: finite scalars of the test split, nested dicts as dotted keys
    (per_class.basophil.f1), lists (confusion matrix) left out. Accepts either the test
    metrics themselves or a {"test": {...}, "val": {...}} dict (then the test split wins).
    ``ece`` is always present when the ML pipeline reported ``ece_after`` (calibrated)."""
    if not metrics:
        return {}
    source = metrics.get("test") if isinstance(metrics.get("test"), dict) else metrics
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            out[prefix] = float(value)
        elif isinstance(value, (int, float)):
            if math.isfinite(float(value)):
                out[prefix] = float(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    walk("", source)
    if "ece" not in out:
        for alias in ("ece_after", "ece_calibrated", "ece_15"):
            if alias in out:
                out["ece"] = out[alias]
                break
    return out


def check_gate(candidate: repo.ModelVersion, active: repo.ModelVersion | None, *, ece_limit: float) -> GateResult:
    f1 = candidate.metrics.get("macro_f1")
    ece = candidate.metrics.get("ece")
    active_f1 = active.metrics.get("macro_f1") if active else None
    reasons: list[str] = []
    if f1 is None:
        reasons.append(f"version {candidate.version} has no test macro_f1")
    elif active is not None and active.version != candidate.version and active_f1 is not None and f1 < active_f1:
        reasons.append(
            f"macro_f1 {f1:.4f} is below the active version {active.version}'s {active_f1:.4f}"
        )
    if ece is None:
        reasons.append(f"version {candidate.version} has no test ECE")
    elif ece > ece_limit:
        reasons.append(f"ECE {ece:.4f} is above the limit {ece_limit:.4f}")
    return GateResult(
        passed=not reasons,
        reasons=reasons,
        candidate_macro_f1=f1,
        candidate_ece=ece,
        active_version=active.version if active else None,
        active_macro_f1=active_f1,
    )


# ----------------------------------------------------------------------------- audit


def _audit(conn: Connection, actor: Actor, action: str, version: repo.ModelVersion, details: dict[str, Any]) -> AuditEvent:
    target_id = f"{version.name}:{version.version}"
    audit_id = repo.insert_audit(
        conn,
        user_id=actor.user_id,
        organization_id=actor.organization_id,
        role=actor.role,
        action=action,
        target_type="model_version",
        target_id=target_id,
        details=details,
    )
    return AuditEvent(id=audit_id, action=action, target_type="model_version", target_id=target_id, details=details)


# ----------------------------------------------------------------------------- activation


@dataclass(frozen=True)
class Activation:
    version: repo.ModelVersion
    events: list[AuditEvent]
    changed: bool


def activate(
    conn: Connection,
    *,
    name: str,
    version: int,
    actor: Actor,
    ece_limit: float,
    force: bool = False,
    reason: str = "",
) -> Activation:
    """Activates `version` behind the gate, inside the caller's transaction."""
    rows = repo.lock_model(conn, name=name)  # serializes concurrent activations of `name`
    by_version = {v.version: v for v in rows}
    candidate = by_version.get(version)
    if candidate is None:
        raise VersionNotFound(name, version)
    if candidate.organization_id is not None:
        # An adapted version only ever serves its organization: its own adaptation activates it,
        # and the organization's rollback takes it back (hemovision_training.adaptation).
        raise VersionNotFound(name, version)
    active = next((v for v in rows if v.status == repo.ACTIVE and v.organization_id is None), None)
    if candidate.status == repo.ACTIVE:
        # Already active (e.g. the loser of a race on the same version): nothing to do.
        return Activation(version=candidate, events=[], changed=False)
    if candidate.deprecated:
        # Rollbacks and force included: deprecating says "never serve this again".
        raise VersionDeprecated(
            f"{name} version {version} is deprecated ({candidate.deprecation_reason}); restore it first"
        )
    if force and actor.role != PLATFORM_ADMIN:
        raise ForbiddenForRole("force=true (skipping the quality gate) needs the role platform_admin")
    gate = check_gate(candidate, active, ece_limit=ece_limit)
    details: dict[str, Any] = {
        "name": name,
        "version": version,
        "previous_active": active.version if active else None,
        "reason": reason,
        "gate": gate.as_dict(),
        "ece_limit": ece_limit,
    }
    if candidate.was_active:
        # It passed the gate when it was first activated: rolling back to it is always allowed.
        action = "model.rollback"
    elif gate.passed:
        action = "model.activate"
    elif force:
        action = "model.activate.force"
    else:
        raise QualityGateRefused(
            f"quality gate refused {name} version {version}: " + "; ".join(gate.reasons)
            + " (a platform_admin may force it)"
        )
    if force:
        details["force"] = True
    updated = repo.set_active(conn, name=name, version=version)
    details["adapted_versions_stale"] = repo.mark_stale(conn, name=name, platform_version=version)
    event = _audit(conn, actor, action, updated, details)
    from hemovision_training import rollouts  # (it builds on this module)

    # Any activation ends a running rollout: promoted when it is the candidate, else aborted.
    ended = rollouts.end_on_activation(conn, name=name, version=version, actor=actor)
    log.info("model activated", extra={"model": name, "version": version, "action": action, "user": actor.user_id})
    return Activation(version=updated, events=[event, *ended], changed=True)


def deprecate(conn: Connection, *, name: str, version: int, actor: Actor, reason: str,
              restore: bool = False) -> Activation:
    """Deprecates a platform version that is not active (or restores it), inside the caller's
    transaction; `changed` is False when it already was in the asked state. An organization's
    adapted version is retired by `_retire_adapted` (platform staff only: the servicer's role check)."""
    rows = repo.lock_model(conn, name=name)  # an activation cannot slip in between
    candidate = next((v for v in rows if v.version == version), None)
    if candidate is None:
        raise VersionNotFound(name, version)
    if candidate.organization_id is not None:
        return _retire_adapted(conn, rows, candidate, name=name, actor=actor, reason=reason, restore=restore)
    if restore:
        if not candidate.deprecated:
            return Activation(version=candidate, events=[], changed=False)
        updated = repo.set_deprecated(conn, name=name, version=version, reason=None)
        event = _audit(conn, actor, "model.restore", updated,
                       {"name": name, "version": version, "reason": reason,
                        "was_deprecated_for": candidate.deprecation_reason})
        return Activation(version=updated, events=[event], changed=True)
    reason = reason.strip()
    if not reason:
        raise InvalidTrainingConfig("a reason is required to deprecate a version (it is shown and audited)")
    if candidate.status == repo.ACTIVE:
        raise VersionDeprecated(f"{name} version {version} is the active version: activate another one first")
    if candidate.deprecated:
        return Activation(version=candidate, events=[], changed=False)
    updated = repo.set_deprecated(conn, name=name, version=version, reason=reason[:500])
    event = _audit(conn, actor, "model.deprecate", updated, {"name": name, "version": version, "reason": reason[:500]})
    from hemovision_training import rollouts

    ended = rollouts.end_on_deprecation(conn, name=name, version=version, actor=actor)  # never rolls out
    log.info("model version deprecated", extra={"model": name, "version": version, "user": actor.user_id})
    return Activation(version=updated, events=[event, *ended], changed=True)


def _retire_adapted(conn: Connection, rows: list[repo.ModelVersion], candidate: repo.ModelVersion, *, name: str,
                    actor: Actor, reason: str, restore: bool) -> Activation:
    """Platform staff retire an organization's adapted version (issue 17: they may retire it, never
    see the organization's cells). If it serves its organization now, the organization goes where
    its own rollback would take it: the version this one replaced, when that is the organization's
    and not deprecated, else the platform's. A restored version serves nobody until its
    organization adapts or rolls back onto it again."""
    org = candidate.organization_id
    if restore:
        if not candidate.deprecated:
            return Activation(version=candidate, events=[], changed=False)
        updated = repo.set_deprecated(conn, name=name, version=candidate.version, reason=None)
        event = _audit(conn, actor, "model.restore", updated,
                       {"name": name, "version": candidate.version, "organization_id": org, "reason": reason,
                        "was_deprecated_for": candidate.deprecation_reason})
        return Activation(version=updated, events=[event], changed=True)
    reason = reason.strip()
    if not reason:
        raise InvalidTrainingConfig("a reason is required to retire a version (it is shown and audited)")
    if candidate.deprecated:
        return Activation(version=candidate, events=[], changed=False)
    now_on: int | str = "unchanged"
    if candidate.status == repo.ACTIVE:
        back = next((v for v in rows if v.version == candidate.replaced_version), None)
        if back is not None and back.organization_id == org and not back.deprecated:
            repo.set_active(conn, name=name, version=back.version, organization_id=org,
                            replaced_version=back.replaced_version)
            now_on = back.version
        else:
            repo.retire_organization_version(conn, name=name, organization_id=org)
            now_on = "platform"
    updated = repo.set_deprecated(conn, name=name, version=candidate.version, reason=reason[:500])
    event = _audit(conn, actor, "model.deprecate", updated,
                   {"name": name, "version": candidate.version, "reason": reason[:500], "organization_id": org,
                    "organization_now_on": now_on})
    log.info("adapted version retired by platform staff",
             extra={"model": name, "version": candidate.version, "organization_id": org, "now_on": now_on,
                    "user": actor.user_id})
    return Activation(version=updated, events=[event], changed=True)


# ----------------------------------------------------------------------------- registration


def register_version(
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
    actor: Actor,
    organization_id: str | None = None,
) -> tuple[repo.ModelVersion, list[AuditEvent]]:
    row = repo.insert_version(
        conn,
        organization_id=organization_id,
        name=name,
        version=version,
        path=path,
        metrics=flatten_metrics(metrics),
        training_config=training_config,
        data_hash=data_hash,
        parent_version=parent_version,
        created_by=created_by,
        job_id=job_id,
    )
    event = _audit(conn, actor, "model.register", row, {"name": name, "version": version, "job_id": job_id,
                                                         "path": path})
    return row, [event]


def published_versions(model_base: str | Path, name: str) -> list[tuple[int, Path]]:
    """Complete published versions on disk: numeric dirs with saved_model.pb and the metadata
    (the exporter's temp dirs start with '.', so a half-written export is never listed)."""
    model_dir = Path(model_base) / name
    if not model_dir.is_dir():
        return []
    found = []
    for p in model_dir.iterdir():
        if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file() and (p / METADATA_RELPATH).is_file():
            found.append((int(p.name), p))
    return sorted(found)


def register_existing(conn: Connection, *, model_base: str | Path, name: str) -> tuple[list[int], int | None, list[AuditEvent]]:
    """Registers published versions the registry lacks (the shipped default model, or an export
    whose worker died before registering it); if no version is active, activates the highest.
    Returns (newly registered versions, version activated or None, audit events)."""
    actor = Actor.system("register-existing")
    existing = {v.version: v for v in repo.lock_model(conn, name=name)}
    added: list[int] = []
    events: list[AuditEvent] = []
    for version, path in published_versions(model_base, name):
        if version in existing:
            continue
        try:
            meta = json.loads((path / METADATA_RELPATH).read_text())
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: unreadable metadata (%s)", path, exc)
            continue
        training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
        row, evs = register_version(
            conn,
            name=name,
            version=version,
            path=str(path.resolve()),
            metrics=meta.get("metrics") or {},
            training_config=training.get("config", training) if isinstance(training, dict) else {},
            data_hash=str(meta.get("data_hash") or ""),
            parent_version=training.get("parent_version") or None,
            created_by=str(training.get("created_by") or ""),
            job_id=training.get("job_id") or None,
            actor=actor,
            # an adapted version stays its organization's (registered, never activated here)
            organization_id=meta.get("organization_id") or None,
        )
        existing[version] = row
        added.append(version)
        events.extend(evs)
    activated = None
    platform = {v: row for v, row in existing.items() if row.organization_id is None}
    if platform and not any(v.status == repo.ACTIVE for v in platform.values()):
        top = max(platform)
        updated = repo.set_active(conn, name=name, version=top)
        events.append(_audit(conn, actor, "model.activate.initial", updated,
                             {"name": name, "version": top, "reason": "no active version; highest published"}))
        activated = top
    return added, activated, events
