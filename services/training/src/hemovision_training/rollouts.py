"""Safe rollouts: a candidate version beside the platform's active one, as a canary (a share of the
platform-routed requests) or a shadow (runs on the same inputs, answers never returned), until it is
promoted (activated through the normal activation path: the quality gate applies) or aborted.

Rules (docs/training.md, "Safe rollouts"):

* one running rollout per model name (partial unique index ``uq_rollouts_one_running``);
* the candidate is a registered *platform* version that is neither active nor deprecated; the
  baseline is the active version at start;
* any activation ends a running rollout: of its candidate -> ``promoted``, of another version ->
  ``aborted`` (hook in ``registry.activate``); deprecating the candidate aborts it;
* every change is audited in training.audit_log in the same transaction (``rollout.start``,
  ``rollout.promote``, ``rollout.abort``).

Inference follows the registry (GetRollout, polled beside GetActiveModelVersion, plus a nudge on
``hemovision_contracts.rollouts.ROLLOUT_CHANNEL``) and writes the live statistics into Redis; this
module reads them back for GetRollout.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from hemovision_contracts import rollouts as contract
from hemovision_training import registry
from hemovision_training import repository as repo
from hemovision_training.errors import (
    InvalidTrainingConfig, RolloutNotFound, RolloutRefused, VersionDeprecated, VersionNotFound,
)
from hemovision_training.registry import Actor, AuditEvent
from hemovision_training.tables import rollouts

log = logging.getLogger(__name__)

RUNNING, PROMOTED, ABORTED = "running", "promoted", "aborted"
CANARY, SHADOW = contract.MODES


@dataclass(frozen=True)
class Rollout:
    id: str
    name: str
    candidate_version: int
    baseline_version: int
    mode: str
    canary_percent: int
    status: str
    started_by: str
    started_at: dt.datetime
    start_reason: str
    ended_by: str
    ended_at: dt.datetime | None
    end_reason: str


@dataclass(frozen=True)
class VersionStats:
    role: str
    version: int
    requests: int
    cells: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class RolloutStats:
    versions: list[VersionStats]
    agree: int = 0
    compared: int = 0
    shadow_dropped: int = 0
    shadow_skipped: int = 0
    shadow_failed: int = 0
    available: bool = True

    @property
    def agreement_rate(self) -> float | None:
        return self.agree / self.compared if self.compared else None


@dataclass(frozen=True)
class RolloutView:
    rollout: Rollout
    stats: RolloutStats | None = None
    events: list[AuditEvent] = field(default_factory=list)


def _rollout(row: Any) -> Rollout:
    return Rollout(**{k: row._mapping[k] for k in Rollout.__dataclass_fields__})


# ----------------------------------------------------------------------------- repository


def running(conn: Connection, *, name: str, lock: bool = False) -> Rollout | None:
    q = select(rollouts).where(rollouts.c.name == name, rollouts.c.status == RUNNING)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).one_or_none()
    return _rollout(row) if row else None


def latest(conn: Connection, *, name: str) -> Rollout | None:
    """The running rollout, else the most recently started one."""
    found = running(conn, name=name)
    if found is not None:
        return found
    row = conn.execute(select(rollouts).where(rollouts.c.name == name)
                       .order_by(rollouts.c.started_at.desc()).limit(1)).one_or_none()
    return _rollout(row) if row else None


def _finish(conn: Connection, *, rollout_id: str, status: str, ended_by: str, reason: str) -> Rollout:
    row = conn.execute(
        update(rollouts).where(rollouts.c.id == rollout_id, rollouts.c.status == RUNNING)
        .values(status=status, ended_by=ended_by, ended_at=dt.datetime.now(dt.UTC), end_reason=reason[:500])
        .returning(*rollouts.c)
    ).one()
    return _rollout(row)


def _audit(conn: Connection, actor: Actor, action: str, r: Rollout, details: dict[str, Any]) -> AuditEvent:
    details = {"name": r.name, "rollout_id": r.id, "candidate_version": r.candidate_version,
               "baseline_version": r.baseline_version, "mode": r.mode, "canary_percent": r.canary_percent,
               **details}
    audit_id = repo.insert_audit(conn, user_id=actor.user_id, organization_id=actor.organization_id,
                                 role=actor.role, action=action, target_type="rollout", target_id=r.id,
                                 details=details)
    return AuditEvent(id=audit_id, action=action, target_type="rollout", target_id=r.id, details=details)


# ----------------------------------------------------------------------------- rules


def validate(mode: str, canary_percent: int) -> None:
    if mode not in contract.MODES:
        raise InvalidTrainingConfig(f"mode must be one of {', '.join(contract.MODES)} (got {mode!r})")
    if mode == CANARY and not contract.CANARY_PERCENT_MIN <= canary_percent <= contract.CANARY_PERCENT_MAX:
        raise InvalidTrainingConfig(
            f"canary_percent must be between {contract.CANARY_PERCENT_MIN} and {contract.CANARY_PERCENT_MAX} "
            f"(got {canary_percent})")
    if mode == SHADOW and canary_percent:
        raise InvalidTrainingConfig(f"a shadow rollout takes no canary_percent (got {canary_percent})")


def start(conn: Connection, *, name: str, version: int, mode: str, canary_percent: int, actor: Actor,
          reason: str = "") -> RolloutView:
    """Starts a rollout inside the caller's transaction."""
    validate(mode, canary_percent)
    rows = repo.lock_model(conn, name=name)  # serialized with activations and deprecations of `name`
    candidate = next((v for v in rows if v.version == version), None)
    if candidate is None or candidate.organization_id is not None:
        raise VersionNotFound(name, version)
    active = next((v for v in rows if v.status == repo.ACTIVE and v.organization_id is None), None)
    if active is None:
        raise RolloutRefused(f"{name} has no active version to roll out beside")
    if candidate.version == active.version:
        raise RolloutRefused(f"{name} version {version} is already the active version")
    if candidate.deprecated:
        raise VersionDeprecated(
            f"{name} version {version} is deprecated ({candidate.deprecation_reason}); restore it first")
    current = running(conn, name=name)
    if current is not None:
        raise RolloutRefused(_busy(current))
    rollout_id = str(uuid.uuid4())
    try:
        with conn.begin_nested():  # the unique index is the last word, even outside this code path
            row = conn.execute(rollouts.insert().values(
                id=rollout_id, name=name, candidate_version=version, baseline_version=active.version, mode=mode,
                canary_percent=canary_percent if mode == CANARY else 0, status=RUNNING, started_by=actor.user_id,
                start_reason=reason[:500]).returning(*rollouts.c)).one()
    except IntegrityError:
        current = running(conn, name=name)
        raise RolloutRefused(_busy(current) if current else f"{name} already has a running rollout") from None
    r = _rollout(row)
    event = _audit(conn, actor, "rollout.start", r, {"reason": reason[:500]})
    log.info("rollout started", extra={"model": name, "rollout_id": r.id, "candidate": version, "mode": mode,
                                       "canary_percent": r.canary_percent, "user": actor.user_id})
    return RolloutView(r, events=[event])


def _busy(r: Rollout) -> str:
    what = f"canary {r.canary_percent} %" if r.mode == CANARY else "shadow"
    return (f"{r.name} already has a running rollout ({what} of version {r.candidate_version}, id {r.id}); "
            "promote or abort it first")


def promote(conn: Connection, *, name: str, actor: Actor, ece_limit: float, reason: str = "") -> RolloutView:
    """Activates the running rollout's candidate through registry.activate (the gate applies; a
    refusal raises and the rollout keeps running). The activation hook marks the rollout promoted."""
    current = running(conn, name=name)
    if current is None:
        raise RolloutRefused(f"{name} has no running rollout to promote")
    activation = registry.activate(conn, name=name, version=current.candidate_version, actor=actor,
                                   ece_limit=ece_limit, reason=reason or f"rollout {current.id} promoted")
    ended = get(conn, rollout_id=current.id)
    if ended is None or ended.status == RUNNING:  # cannot happen: activation always ends it
        raise RolloutRefused(f"rollout {current.id} was not ended by activating its candidate")
    return RolloutView(ended, events=activation.events)


def abort(conn: Connection, *, name: str, actor: Actor, reason: str = "") -> RolloutView:
    repo.lock_model(conn, name=name)  # same lock order as activations: versions, then the rollout
    current = running(conn, name=name, lock=True)
    if current is None:
        raise RolloutRefused(f"{name} has no running rollout to abort")
    ended = _finish(conn, rollout_id=current.id, status=ABORTED, ended_by=actor.user_id,
                    reason=reason or "aborted")
    event = _audit(conn, actor, "rollout.abort", ended, {"reason": reason[:500]})
    log.info("rollout aborted", extra={"model": name, "rollout_id": ended.id, "user": actor.user_id})
    return RolloutView(ended, events=[event])


def get(conn: Connection, *, rollout_id: str) -> Rollout | None:
    row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).one_or_none()
    return _rollout(row) if row else None


def end_on_activation(conn: Connection, *, name: str, version: int, actor: Actor) -> list[AuditEvent]:
    """Called by registry.activate after it changed the active version (same transaction): a
    running rollout ends, promoted when `version` is its candidate, else aborted."""
    current = running(conn, name=name, lock=True)
    if current is None:
        return []
    if version == current.candidate_version:
        ended = _finish(conn, rollout_id=current.id, status=PROMOTED, ended_by=actor.user_id,
                        reason=f"version {version} (the candidate) was activated")
        action = "rollout.promote"
    else:
        ended = _finish(conn, rollout_id=current.id, status=ABORTED, ended_by=actor.user_id,
                        reason=f"version {version} was activated")
        action = "rollout.abort"
    log.info("activation ended a rollout", extra={"model": name, "rollout_id": ended.id, "status": ended.status})
    return [_audit(conn, actor, action, ended, {"reason": ended.end_reason, "activated_version": version})]


def end_on_deprecation(conn: Connection, *, name: str, version: int, actor: Actor) -> list[AuditEvent]:
    """A deprecated version never rolls out: deprecating a running rollout's candidate aborts it."""
    current = running(conn, name=name, lock=True)
    if current is None or current.candidate_version != version:
        return []
    ended = _finish(conn, rollout_id=current.id, status=ABORTED, ended_by=actor.user_id,
                    reason=f"version {version} was deprecated")
    return [_audit(conn, actor, "rollout.abort", ended, {"reason": ended.end_reason})]


# ----------------------------------------------------------------------------- statistics


def stats_from_hash(r: Rollout, raw: dict | None) -> RolloutStats:
    """The live statistics (Redis hash hemovision_contracts.rollouts.rollout_stats_key) of `r`;
    raw None = the store could not be read."""
    parsed = contract.read_stats(raw or {})
    versions = []
    for role, version in (("baseline", r.baseline_version), ("candidate", r.candidate_version)):
        counts = parsed["latency"][role]
        versions.append(VersionStats(role=role, version=version, requests=parsed["requests"][role],
                                     cells=parsed["cells"][role], p50_ms=contract.percentile_ms(counts, 0.5),
                                     p95_ms=contract.percentile_ms(counts, 0.95)))
    agree, disagree = parsed[contract.AGREE_FIELD], parsed[contract.DISAGREE_FIELD]
    return RolloutStats(versions=versions, agree=agree, compared=agree + disagree,
                        shadow_dropped=parsed[contract.SHADOW_DROPPED_FIELD],
                        shadow_skipped=parsed[contract.SHADOW_SKIPPED_FIELD],
                        shadow_failed=parsed[contract.SHADOW_FAILED_FIELD], available=raw is not None)


# ----------------------------------------------------------------------------- service


class RolloutService:
    """Rollouts behind the gRPC servicer (no gRPC here): database work in TrainingService's
    transactions, audit forwarded to history after commit, a nudge to inference on Redis."""

    def __init__(self, training) -> None:  # TrainingService
        self.training = training

    def _name(self, name: str) -> str:
        return name or self.training.settings.model_name

    async def start(self, actor: Actor, name: str, *, version: int, mode: str, canary_percent: int,
                    reason: str) -> RolloutView:
        view = await self.training._tx(start, name=self._name(name), version=version, mode=mode,
                                       canary_percent=canary_percent, actor=actor, reason=reason)
        await self._after(view, actor)
        return RolloutView(view.rollout, await self.stats(view.rollout), view.events)

    async def get(self, name: str, *, with_stats: bool) -> RolloutView:
        found = await self.training._tx(latest, name=self._name(name))
        if found is None:
            raise RolloutNotFound(self._name(name))
        return RolloutView(found, await self.stats(found) if with_stats else None)

    async def promote(self, actor: Actor, name: str, *, reason: str) -> RolloutView:
        view = await self.training._tx(promote, name=self._name(name), actor=actor,
                                       ece_limit=self.training.settings.ece_limit, reason=reason)
        await self._after(view, actor)
        return RolloutView(view.rollout, await self.stats(view.rollout), view.events)

    async def abort(self, actor: Actor, name: str, *, reason: str) -> RolloutView:
        view = await self.training._tx(abort, name=self._name(name), actor=actor, reason=reason)
        await self._after(view, actor)
        return RolloutView(view.rollout, await self.stats(view.rollout), view.events)

    async def _after(self, view: RolloutView, actor: Actor) -> None:
        await self.training._forward_audit(view.events, token=actor.token)
        await announce(self.training.redis, view.rollout)

    async def stats(self, r: Rollout) -> RolloutStats:
        try:
            raw = await self.training.redis.hgetall(contract.rollout_stats_key(r.id))
        except Exception as exc:  # noqa: BLE001 - the record still answers; the numbers say unavailable
            log.warning("rollout statistics unavailable: %s", exc)
            raw = None
        return stats_from_hash(r, raw)


async def announce(redis, r: Rollout) -> None:
    """Tells inference replicas to re-read the registry now (they poll it anyway)."""
    try:
        await redis.publish(contract.ROLLOUT_CHANNEL, contract.rollout_event(r.name, r.id, r.status))
    except Exception as exc:  # noqa: BLE001 - replicas still see it on their next poll
        log.warning("could not announce the rollout change: %s", exc)


async def announce_ended(redis, events: list[AuditEvent], name: str) -> None:
    """After an activation or deprecation that ended a rollout (registry hook)."""
    for e in events:
        if e.target_type == "rollout":
            try:
                await redis.publish(contract.ROLLOUT_CHANNEL, contract.rollout_event(name, e.target_id, "ended"))
            except Exception as exc:  # noqa: BLE001
                log.warning("could not announce the rollout change: %s", exc)
