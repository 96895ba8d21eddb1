"""Which version answers: the platform's active version, reconciled with the training registry on
every replica (hot swap with a drain window), the organizations' adapted versions beside it
(org_routing.py), and each version's metadata (assets.extra/hemovision.json). No gRPC here."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hemovision_inference.errors import ModelServerUnavailable, NoActiveModel, VersionNotLoaded
from hemovision_inference.org_routing import OrgRouting
from hemovision_inference.registry import RegistryUnavailable
from hemovision_inference.rollout import BASELINE, CANDIDATE, RolloutInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelMetadata:
    """assets.extra/hemovision.json of one version."""

    name: str
    version: int
    class_names: list[str]
    input_size: int
    preprocessing: dict
    temperature: float
    review_threshold: float
    ood_threshold: float
    metrics: dict = field(default_factory=dict)
    # hemovision.json "ood_score" describes the score; the energy score -logsumexp(logits) can be
    # recomputed from `explain`'s logits, which saves Explain a second model call.
    ood_from_logits: bool = False
    organization_id: str = ""  # an adapted version's organization; "" for a platform version


def read_metadata(model_base: Path, name: str, version: int) -> ModelMetadata:
    path = model_base / name / str(version) / "assets.extra" / "hemovision.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise VersionNotLoaded(f"model {name} version {version} has no hemovision.json under {model_base}") from None
    except ValueError as exc:
        raise VersionNotLoaded(f"model {name} version {version}: unreadable hemovision.json ({exc})") from None
    ood = raw.get("ood_threshold")
    return ModelMetadata(
        name=name,
        version=version,
        class_names=list(raw["class_names"]),
        input_size=int(raw.get("input_size") or raw.get("preprocessing", {}).get("input_size")),
        preprocessing=dict(raw.get("preprocessing") or {}),
        temperature=float(raw.get("temperature", 1.0)),
        review_threshold=float(raw.get("review_threshold", 0.0)),
        ood_threshold=float("inf") if ood is None else float(ood),
        metrics=dict(raw.get("metrics") or {}),
        ood_from_logits="logsumexp" in str(raw.get("ood_score", "")).replace(" ", "").lower(),
        organization_id=str(raw.get("organization_id") or ""),
    )


@dataclass(frozen=True)
class Caller:
    """Who a request acts for (from the verified token): its organization picks the version."""

    organization_id: str
    token: str  # forwarded to the registry, which answers for the token's organization


@dataclass(frozen=True)
class Route:
    version: int
    adapted: bool  # the caller's organization's own version
    # A platform-routed request during a rollout: the rollout, and whether the baseline (the
    # active version) or the candidate (a canary share) answers it.
    rollout: RolloutInfo | None = None
    role: str = ""


class ModelRouter:
    """Which version new requests go to, kept in step with the registry on every replica.

    On a change of the registry's active version: pin {new, old (+ draining)} on the model
    server, wait until the new one is AVAILABLE (loaded and warm), switch, keep the old one
    pinned through the drain window, then pin {new} only. Registry unreachable or empty:
    follow the highest platform version the model server has AVAILABLE (no new pins).
    Organizations' adapted versions (self.orgs) are pinned beside the platform's, and so is the
    candidate of the registry's running rollout (self.rollout): pre-loaded when the rollout starts,
    routed to (canary) or shadowed only once AVAILABLE, kept pinned through the drain window (and
    while requests hold it) when the rollout ends.
    """

    def __init__(
        self,
        *,
        model_name: str,
        model_server,  # ModelServerClient
        registry,  # RegistryClient | None
        model_base: Path,
        drain_seconds: float = 30.0,
        reconcile_interval_s: float = 3.0,
        load_timeout_s: float = 300.0,
        on_ready: Callable[[bool], Awaitable[None]] | None = None,
        max_org_versions: int = 4,
        org_idle_s: float = 600.0,
        org_load_timeout_s: float = 60.0,
    ) -> None:
        self.model_name = model_name
        self.model_server = model_server
        self.registry = registry
        self.model_base = model_base
        self.drain_seconds = drain_seconds
        self.reconcile_interval_s = reconcile_interval_s
        self.load_timeout_s = load_timeout_s
        self.on_ready = on_ready
        self.active: int | None = None
        self.pending: int | None = None  # the registry's new version while it loads
        self.draining: dict[int, float] = {}  # version -> monotonic time its drain ends
        self.pinned: set[int] | None = None
        self._pin_lock = asyncio.Lock()  # pins come from the loop and from requests: one at a time
        self.ready = False
        self.mode = "starting"
        self._metadata: dict[int, ModelMetadata] = {}
        self._task: asyncio.Task | None = None
        self._registry_error_logged = False
        self.switches: list[tuple[float, int | None, int]] = []
        self.missing_timeout_s = 30.0
        self.rollout: RolloutInfo | None = None  # the registry's running rollout
        self.rollout_ready = False  # its candidate is AVAILABLE: canary / shadow traffic may go to it
        self._rollout_load: asyncio.Task | None = None
        self._rollout_retry_at = 0.0
        self._wake = asyncio.Event()  # a rollout event: reconcile now instead of at the next tick
        self.rng = random.Random()
        self.orgs = (
            OrgRouting(self, registry, max_versions=max_org_versions, idle_s=org_idle_s,
                       load_timeout_s=org_load_timeout_s)
            if registry is not None else None
        )

    # ---- metadata --------------------------------------------------------------------------

    def metadata(self, version: int) -> ModelMetadata:
        cached = self._metadata.get(version)
        if cached is None:
            cached = read_metadata(self.model_base, self.model_name, version)
            self._metadata[version] = cached  # a version directory never changes once published
        return cached

    def compatible(self, a: int, b: int) -> bool:
        """True when a tensor prepared for version a is valid input for version b."""
        try:
            ma, mb = self.metadata(a), self.metadata(b)
        except VersionNotLoaded:
            return False
        return (ma.input_size, ma.preprocessing, ma.class_names) == (mb.input_size, mb.preprocessing, mb.class_names)

    # ---- routing (docs/serving.md, "Routing order") ----------------------------------------

    async def route(self, requested: int, caller: Caller | None, wait_s: float | None = None, *,
                    any_spec: bool = False) -> Route:
        """The version to serve a request with, counted in flight until release(). requested 0: the
        caller's organization's adapted version (a cold one waits for its load, at most wait_s),
        else a running canary's candidate with its share, else the platform's. An explicit version
        is served as asked, except another organization's (answered like a version that is not
        loaded). `any_spec`: the inputs are prepared after routing (AnalyzeImages), so a canary
        candidate with another preprocessing may answer; tensors prepared for the active version
        (Classify/Explain with version 0) go to the candidate only when it reads the same input."""
        org = caller.organization_id if caller is not None and self.orgs is not None else ""
        if requested:
            owner = self.owner_of(requested)
            if owner and owner != org:
                raise VersionNotLoaded(f"model {self.model_name} version {requested} is not loaded on the model server")
            if owner and await self.orgs.routed(org, caller.token) == requested:
                v = await self.orgs.acquire(org, caller.token, wait_s)
                if v == requested:
                    return Route(v, adapted=True)
                if v is not None:
                    self.orgs.release(v)
                # Its version could not be loaded: the platform's answers if it reads the same tensor.
                if self.active is None or not self.compatible(requested, self.active):
                    raise VersionNotLoaded(f"model {self.model_name} version {requested} could not be loaded")
                requested = self.active
            return self._hold(Route(requested, adapted=False))
        if org:
            v = await self.orgs.acquire(org, caller.token, wait_s)
            if v is not None:
                return Route(v, adapted=True)
        if self.active is None:
            raise NoActiveModel("no model version is loaded yet")
        rollout = self.rollout
        if rollout is None or not self.rollout_ready:
            return self._hold(Route(self.active, adapted=False))
        if (rollout.mode == "canary" and self.rng.random() * 100 < rollout.percent
                and (any_spec or self.compatible(self.active, rollout.candidate))):
            return self._hold(Route(rollout.candidate, adapted=False, rollout=rollout, role=CANDIDATE))
        return self._hold(Route(self.active, adapted=False, rollout=rollout, role=BASELINE))

    def hold_version(self, version: int) -> None:
        """Counts a use of `version` in flight (a shadow run): never unpinned until release_version()."""
        if self.orgs is not None:
            self.orgs.hold(version)

    def release_version(self, version: int) -> None:
        if self.orgs is not None:
            self.orgs.release(version)

    def in_flight(self, version: int) -> int:
        return self.orgs.inflight[version] if self.orgs is not None else 0

    def rollout_lost(self, rollout: RolloutInfo) -> None:
        """The model server did not serve the candidate (it restarted): no more canary or shadow
        traffic until the reconcile loop sees it AVAILABLE again."""
        if self.rollout is rollout:
            self.rollout_ready = False

    def nudge(self) -> None:
        """Reconcile now (a rollout started or ended): the candidate starts loading at once."""
        self._wake.set()

    def _hold(self, route: Route) -> Route:
        if self.orgs is not None:
            self.orgs.hold(route.version)
        return route

    def release(self, route: Route) -> None:
        if self.orgs is not None:
            self.orgs.release(route.version)

    async def version_for(self, caller: Caller | None) -> int:
        """What GetActiveModel answers: the version the caller's next request gets (a cold
        organization version starts loading now)."""
        if caller is not None and caller.organization_id and self.orgs is not None:
            v = await self.orgs.peek(caller.organization_id, caller.token)
            if v is not None:
                return v
        if self.active is None:
            raise NoActiveModel("no model version is loaded yet")
        return self.active

    # ---- loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.orgs is not None:
            await self.orgs.close()
        if self._rollout_load is not None and not self._rollout_load.done():
            self._rollout_load.cancel()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("reconcile failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.reconcile_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            log.info("inference readiness changed", extra={"ready": ready, "active_version": self.active})
            if self.on_ready:
                await self.on_ready(ready)

    async def reconcile_once(self) -> None:
        try:
            statuses = {s.version: s for s in await self.model_server.status(self.model_name)}
        except ModelServerUnavailable as exc:
            log.warning("model server unreachable", extra={"error": str(exc)})
            await self._set_ready(False)
            return
        if self.orgs is not None:
            try:
                await self.orgs.maintain(statuses)
            except ModelServerUnavailable as exc:
                log.warning("model server unreachable", extra={"error": str(exc)})
        target = await self._registry_target()
        now = time.monotonic()
        for version, until in list(self.draining.items()):
            if now >= until and not self.in_flight(version):  # never unpinned under a request
                del self.draining[version]
        if target is None:
            # Fallback: follow the model server's own policy; no pinning.
            available = [v for v, s in statuses.items() if s.available and self._is_platform_version(v)]
            if self.mode != "fallback":
                log.warning(
                    "registry has no active version or is unreachable; serving the highest AVAILABLE version",
                    extra={"available": sorted(available)},
                )
                self.mode = "fallback"
            if available and max(available) != self.active:
                self._switch(max(available))
            await self._set_ready(self.active is not None and self.active in available)
            return
        self.mode = "registry"
        await self._reconcile_rollout(statuses)
        if target != self.active:
            await self._activate(target, statuses)
            return
        self.pending = None
        if not statuses.get(target) or not statuses[target].available or self.pinned != self.wanted():
            # Model server restarted, or a drain window ended: (re)pin.
            await self.pin_now()
            if not statuses.get(target) or not statuses[target].available:
                await self._set_ready(False)
                ok = await self._wait_platform(target)
                await self._set_ready(ok)
                return
        await self._set_ready(True)

    async def _registry_target(self) -> int | None:
        if self.registry is None:
            return None
        try:
            version = await self.registry.active_version(self.model_name)
            self._registry_error_logged = False
            return version
        except RegistryUnavailable as exc:
            if not self._registry_error_logged:
                log.warning("training registry unreachable", extra={"error": str(exc)})
                self._registry_error_logged = True
            return None

    async def _reconcile_rollout(self, statuses) -> None:
        """Follows the registry's running rollout: a new one pins its candidate and loads it in the
        background (routing starts once it is AVAILABLE); an ended one stops routing to it at once
        and keeps it pinned through the drain window. Registry unreachable: the last answer stands."""
        if self.registry is None or not hasattr(self.registry, "rollout"):
            return
        try:
            info = await self.registry.rollout(self.model_name)
        except RegistryUnavailable:
            return
        old = self.rollout
        if old is not None and old != info:
            self.rollout, self.rollout_ready = None, False
            if self._rollout_load is not None and not self._rollout_load.done():
                self._rollout_load.cancel()
            if old.candidate != self.active:
                self.draining[old.candidate] = time.monotonic() + self.drain_seconds
            log.info("rollout ended on this replica", extra={"rollout_id": old.id, "version": old.candidate})
        if info is None:
            if old is not None:
                await self.pin_now()
            return
        if self.rollout is None:
            self.rollout = info
            self.draining.pop(info.candidate, None)
            log.info("rollout started on this replica", extra={
                "rollout_id": info.id, "version": info.candidate, "mode": info.mode, "canary_percent": info.percent})
        status = statuses.get(info.candidate)
        if self.rollout_ready and not (status is not None and status.available):
            self.rollout_ready = False  # the model server lost it (restart): load it again
        loading = self._rollout_load is not None and not self._rollout_load.done()
        if not self.rollout_ready and not loading and time.monotonic() >= self._rollout_retry_at:
            self._rollout_load = asyncio.create_task(self._load_candidate(info))

    async def _load_candidate(self, info: RolloutInfo) -> None:
        async def still_wanted() -> bool:
            return self.rollout is info

        try:
            self.metadata(info.candidate)  # not published under the model base: fail now
            await self.pin_now()
            ok = await self.wait_available(info.candidate, self.load_timeout_s, still_wanted)
        except Exception as exc:  # noqa: BLE001 - unpublished, model server unreachable: a failed load
            log.warning("rollout candidate could not be loaded", extra={"version": info.candidate,
                                                                       "error": str(exc)[:300]})
            ok = False
        if self.rollout is not info:
            return
        if ok:
            self.rollout_ready = True
            log.info("rollout candidate available; routing to it", extra={
                "rollout_id": info.id, "version": info.candidate, "mode": info.mode})
        else:
            self._rollout_retry_at = time.monotonic() + max(5.0, self.reconcile_interval_s * 4)
            log.error("rollout candidate did not become AVAILABLE; only the active version serves",
                      extra={"rollout_id": info.id, "version": info.candidate})

    def owner_of(self, version: int) -> str:
        """The organization an adapted version belongs to ("" for a platform version)."""
        owner = self.orgs.owner.get(version, "") if self.orgs is not None else ""
        if not owner:
            try:
                owner = self.metadata(version).organization_id
            except VersionNotLoaded:
                pass
        return owner

    def _is_platform_version(self, version: int) -> bool:
        try:
            self.metadata(version)
        except VersionNotLoaded:
            return False
        return not self.owner_of(version)

    async def _activate(self, target: int, statuses) -> None:
        previous = self.active
        self.pending = target
        log.info("activating model version", extra={"from_version": previous, "to_version": target})
        await self.pin_now()
        if not await self._wait_platform(target):
            return  # the old version keeps serving; retried next round
        try:
            self.metadata(target)
        except VersionNotLoaded as exc:
            log.error("new version has no usable metadata; not switching", extra={"error": exc.message})
            return
        self._switch(target)
        self.pending = None
        await self._set_ready(True)

    def _switch(self, target: int) -> None:
        previous = self.active
        self.active = target
        self.draining.pop(target, None)
        if previous is not None and previous != target:
            self.draining[previous] = time.monotonic() + self.drain_seconds
        self.switches.append((time.monotonic(), previous, target))
        log.info("routing switched", extra={"from_version": previous, "to_version": target})

    def wanted(self) -> set[int]:
        """Every version to keep pinned: the platform's active, pending and draining ones, and the
        organizations' (org_routing)."""
        platform = {v for v in (self.active, self.pending) if v is not None} | set(self.draining)
        if self.rollout is not None:
            platform.add(self.rollout.candidate)
        return platform | (self.orgs.pinned_versions() if self.orgs is not None else set())

    def can_pin(self) -> bool:
        """Organization versions are pinned only where the platform's are (registry mode, or after
        it): pinning in pure fallback mode would freeze the model server's own version policy."""
        return self.active is not None and (self.mode == "registry" or self.pinned is not None)

    async def pin_now(self) -> None:
        async with self._pin_lock:
            versions = self.wanted()  # taken under the lock: the last pin sent is the latest state
            await self.model_server.pin(self.model_name, versions)
            changed = versions != self.pinned
            self.pinned = versions
        if changed:
            log.info("pinned model versions", extra={"versions": sorted(versions)})

    async def _wait_platform(self, version: int) -> bool:
        next_check = time.monotonic() + self.reconcile_interval_s

        async def still_wanted() -> bool:
            nonlocal next_check
            if time.monotonic() < next_check or self.mode != "registry":
                return True
            next_check = time.monotonic() + self.reconcile_interval_s
            target = await self._registry_target()
            if target is not None and target != version:
                log.info("registry moved on while waiting", extra={"version": version, "target": target})
                return False
            return True

        return await self.wait_available(version, self.load_timeout_s, still_wanted)

    async def wait_available(
        self, version: int, timeout_s: float, still_wanted: Callable[[], Awaitable[bool]] | None = None
    ) -> bool:
        """True once `version` is AVAILABLE. False on a failed load, a timeout, a version the model
        server never sees (not published) within missing_timeout_s, or once still_wanted() is False."""
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if still_wanted is not None and not await still_wanted():
                return False
            try:
                statuses = {s.version: s for s in await self.model_server.status(self.model_name)}
            except ModelServerUnavailable:
                return False
            status = statuses.get(version)
            if status is not None and status.available:
                return True
            if status is None and time.monotonic() - started > self.missing_timeout_s:
                log.error("model version not found by the model server (not published?)", extra={"version": version})
                return False
            if status is not None and status.state == "END" and status.error_code != 0:
                log.error(
                    "model version failed to load",
                    extra={"version": version, "error": status.error_message[:300]},
                )
                return False
            await asyncio.sleep(0.2)
        log.error("model version did not become AVAILABLE in time", extra={"version": version})
        return False
