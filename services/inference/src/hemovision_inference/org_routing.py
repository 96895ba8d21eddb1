"""Per-organization routing: a request goes to its organization's active adapted version, else to the
platform's active version (docs/serving.md, "Routing order").

The registry answers GetOrganizationModel for the caller's own token. Answers are cached per
organization and refreshed at most every reconcile_interval_s, in the background of that
organization's next request, so only its first request waits for the registry; while the registry
cannot be asked, the last answer stands. Adapted versions are pinned on the model server beside the
platform's, on demand:

- cold: the organization's version is not loaded: its request pins it and waits until it is
  AVAILABLE (one shared wait per version, bounded by load_timeout_s; a request waits at most its
  own deadline). A load that fails or times out sends the organization to the platform's version
  and is retried after a backoff: adaptation never fails a request.
- hot swap: the registry names a new version while the old one serves: the old one answers until
  the new one is AVAILABLE, then stays pinned through the drain window (requests prepared for it).
- bound: at most max_versions routable organization versions are pinned; a new one evicts the least
  recently used one with no request in flight, and one idle for idle_s is unpinned. A version with
  requests in flight (or waiting for its load) is never unpinned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from hemovision_inference.registry import RegistryUnavailable

log = logging.getLogger(__name__)

RETRY_MAX_S = 300.0  # the longest wait before a version that failed to load is tried again


@dataclass
class OrgEntry:
    """What the registry said for one organization, and where its requests go now."""

    version: int | None = None  # routed: its adapted version; None = the platform's
    wanted: int | None = None  # the registry's last answer
    checked_at: float = float("-inf")
    last_seen: float = 0.0
    answered: bool = False  # the registry answered (or failed to) at least once
    refresh: asyncio.Task | None = None


@dataclass
class HotVersion:
    """An organization version pinned on the model server to be routed to."""

    version: int
    last_used: float
    ready: bool = False  # seen AVAILABLE
    load: asyncio.Task | None = None  # the one wait for AVAILABLE that every request shares


class OrgRouting:
    """`router` is the ModelRouter: model_name, active, reconcile_interval_s, drain_seconds, can_pin(),
    pin_now() (pins the platform's versions plus pinned_versions()) and wait_available()."""

    def __init__(
        self, router, registry, *, max_versions: int = 4, idle_s: float = 600.0, load_timeout_s: float = 60.0
    ) -> None:
        self.router = router
        self.registry = registry
        self.max_versions = max_versions
        self.idle_s = idle_s
        self.load_timeout_s = load_timeout_s
        self.entries: dict[str, OrgEntry] = {}
        self.hot: dict[int, HotVersion] = {}
        self.draining: dict[int, float] = {}  # version -> monotonic time its drain ends
        self.inflight: Counter[int] = Counter()  # requests in flight per version (every version)
        self.owner: dict[int, str] = {}  # adapted version -> its organization, as the registry said
        self.switches: list[tuple[float, str, int | None, int | None]] = []
        self._failed: dict[int, tuple[float, int]] = {}  # version -> (retry after, failures)
        self._outage_logged = False
        self._cap_logged = False

    def pinned_versions(self) -> set[int]:
        return set(self.hot) | set(self.draining)

    # ---- requests --------------------------------------------------------------------------

    async def routed(self, org: str, token: str) -> int | None:
        """The adapted version the organization's requests go to now (None = the platform's)."""
        return (await self._entry(org, token)).version

    async def acquire(self, org: str, token: str, wait_s: float | None = None) -> int | None:
        """The organization's adapted version, AVAILABLE, with one request counted in flight on it
        (release() it); None = serve the platform's version. Waits for a cold load, at most wait_s."""
        v = (await self._entry(org, token)).version
        if v is None:
            return None
        hot = self.hot.get(v)
        if hot is not None and hot.ready:  # no await between this check and the count: eviction sees it
            hot.last_used = time.monotonic()
            self.inflight[v] += 1
            return v
        load = self._start_load(v)
        if load is None:
            return None
        self.inflight[v] += 1  # a waiting request counts as in flight: never evicted under it
        try:
            ok = await asyncio.wait_for(asyncio.shield(load), wait_s)
        except TimeoutError:
            ok = False
            log.warning("request deadline too short for its organization's cold load; served by the platform version",
                        extra={"organization_id": org, "version": v})
        except BaseException:
            self.release(v)
            raise
        hot = self.hot.get(v)
        if ok and hot is not None and hot.ready:
            hot.last_used = time.monotonic()
            return v
        self.release(v)
        return None

    async def peek(self, org: str, token: str) -> int | None:
        """The version the organization's next request will get (None = the platform's), without
        waiting: a cold one starts loading now, for the request that usually follows (GetActiveModel:
        a direct gRPC caller asks for the version and its spec before sending Classify/Explain tensors)."""
        v = (await self._entry(org, token)).version
        if v is None:
            return None
        hot = self.hot.get(v)
        if hot is not None and hot.ready:
            hot.last_used = time.monotonic()
            return v
        return v if self._start_load(v) is not None else None

    def preload(self, org: str, version: int) -> None:
        """The training service announced that `version` became the organization's (activation or
        rollback): load it now, so its next request finds it warm, and make that request re-ask the
        registry. Routing still follows only the registry's answer for the caller's token."""
        entry = self.entries.get(org)
        if entry is not None:
            entry.checked_at = float("-inf")
        if entry is None or entry.version != version:
            log.info("pre-loading an organization's newly activated version",
                     extra={"organization_id": org, "version": version})
            self._start_load(version, spare=1 if entry is not None and entry.version is not None else 0)

    def hold(self, version: int) -> None:
        self.inflight[version] += 1

    def release(self, version: int) -> None:
        self.inflight[version] -= 1
        if self.inflight[version] <= 0:
            del self.inflight[version]

    def lost(self, version: int) -> None:
        """The model server answered NOT_FOUND for a version we routed to (it restarted): load it again."""
        hot = self.hot.get(version)
        if hot is not None:
            hot.ready = False

    # ---- registry --------------------------------------------------------------------------

    async def _entry(self, org: str, token: str) -> OrgEntry:
        now = time.monotonic()
        entry = self.entries.get(org)
        if entry is None:
            entry = self.entries[org] = OrgEntry()
        entry.last_seen = now
        idle = entry.refresh is None or entry.refresh.done()
        if idle and now - entry.checked_at >= self.router.reconcile_interval_s:
            entry.refresh = asyncio.create_task(self._refresh(org, entry, token))
        if not entry.answered and entry.refresh is not None:
            await asyncio.shield(entry.refresh)  # its first request: the answer decides who serves it
        return entry

    async def _refresh(self, org: str, entry: OrgEntry, token: str) -> None:
        try:
            version, adapted = await self.registry.organization_version(token, self.router.model_name)
        except Exception as exc:  # noqa: BLE001 - RegistryUnavailable, or anything: keep the last answer
            if not self._outage_logged:
                log.warning("training registry unreachable; organizations keep their last known version",
                            extra={"error": str(exc)[:300], "unexpected": not isinstance(exc, RegistryUnavailable)})
                self._outage_logged = True
            entry.checked_at = time.monotonic()
            entry.answered = True
            return
        if self._outage_logged:
            log.info("training registry answers organization queries again")
            self._outage_logged = False
        entry.checked_at = time.monotonic()
        first = not entry.answered
        entry.answered = True
        target = version if adapted and version != self.router.active else None
        if target is not None:
            self.owner[target] = org
        entry.wanted = target
        if target == entry.version:
            return
        old = entry.version
        serving = old is not None and old in self.hot and self.hot[old].ready
        if first or target is None or not serving:
            # Nothing of the organization's is answering (first answer, back to the platform, or its
            # version idled out): switch now. A new version starts loading at once; the first
            # answer's is loaded by the request that waits for it.
            self._switch(org, entry, target)
            if target is not None and not first:
                self._start_load(target)
            return
        # Hot swap: the old version answers until the new one is AVAILABLE. It takes the old one's
        # place, so the bound does not stop it.
        load = self._start_load(target, spare=1)
        ok = load is not None and await asyncio.shield(load)
        if not ok:
            log.error("organization's new version did not load; it is served by the platform version",
                      extra={"organization_id": org, "version": target})
        self._switch(org, entry, target if ok else None)

    def _switch(self, org: str, entry: OrgEntry, target: int | None) -> None:
        old = entry.version
        entry.version = target
        if old is not None and old != target:
            hot = self.hot.pop(old, None)
            if hot is not None:  # it answered: pinned through the drain window, for requests prepared for it
                self.draining[old] = time.monotonic() + self.router.drain_seconds
        self.switches.append((time.monotonic(), org, old, target))
        log.info("organization routing switched",
                 extra={"organization_id": org, "from_version": old, "to_version": target})

    # ---- loading and the bound -------------------------------------------------------------

    def _start_load(self, version: int, spare: int = 0) -> asyncio.Task | None:
        """The shared wait for `version` (pinned now if it was not); None when it cannot be pinned
        (failed recently, no room, or no pinning possible): its organization gets the platform's."""
        failed = self._failed.get(version)
        if failed is not None and time.monotonic() < failed[0]:
            return None
        hot = self.hot.get(version)
        if hot is None:
            if not self.router.can_pin() or not self._make_room(spare):
                return None
            self.draining.pop(version, None)
            hot = self.hot[version] = HotVersion(version, last_used=time.monotonic())
        if hot.load is None or hot.load.done():
            hot.load = asyncio.create_task(self._load(hot))
        return hot.load

    def _make_room(self, spare: int = 0) -> bool:
        while len(self.hot) - spare >= self.max_versions:
            idle = [h for h in self.hot.values()
                    if not self.inflight[h.version] and (h.load is None or h.load.done())]
            if not idle:
                if not self._cap_logged:
                    log.warning("organization versions at their bound and all in use; a new one is served by "
                                "the platform version", extra={"max_org_versions": self.max_versions})
                    self._cap_logged = True
                return False
            victim = min(idle, key=lambda h: h.last_used)
            del self.hot[victim.version]
            log.info("unpinning least recently used organization version", extra={"version": victim.version})
        self._cap_logged = False
        return True

    async def _load(self, hot: HotVersion) -> bool:
        v = hot.version
        started = time.monotonic()

        async def still_wanted() -> bool:
            return self.hot.get(v) is hot

        try:
            # Not under the model base (not published): fail now rather than wait for the model server
            # never to see it.
            self.router.metadata(v)
            await self.router.pin_now()
            ok = await self.router.wait_available(v, self.load_timeout_s, still_wanted)
        except Exception as exc:  # noqa: BLE001 - unpublished, model server unreachable: a failed load
            log.warning("organization version load could not be requested",
                        extra={"version": v, "error": str(exc)[:300]})
            ok = False
        if self.hot.get(v) is not hot:
            return False  # unpinned while loading
        if ok:
            hot.ready = True
            self._failed.pop(v, None)
            log.info("organization version available",
                     extra={"version": v, "load_seconds": round(time.monotonic() - started, 2)})
            return True
        failures = self._failed.get(v, (0.0, 0))[1] + 1
        delay = min(RETRY_MAX_S, max(1.0, self.router.reconcile_interval_s) * 2 ** failures)
        self._failed[v] = (time.monotonic() + delay, failures)
        del self.hot[v]
        log.error("organization version did not become AVAILABLE; its organization is served by the platform "
                  "version", extra={"version": v, "retry_in_s": round(delay, 1)})
        try:
            await self.router.pin_now()
        except Exception:  # noqa: BLE001 - the reconcile loop pins again
            pass
        return False

    # ---- upkeep (the router's reconcile loop) ----------------------------------------------

    async def maintain(self, statuses: dict) -> None:
        """Unpins idle versions and ended drains, notices versions the model server lost."""
        now = time.monotonic()
        changed = False
        for v, hot in list(self.hot.items()):
            status = statuses.get(v)
            if hot.ready and not (status is not None and status.available):
                hot.ready = False  # the model server restarted: the next request loads it again
            busy = self.inflight[v] or (hot.load is not None and not hot.load.done())
            if not busy and now - hot.last_used >= self.idle_s:
                del self.hot[v]
                changed = True
                log.info("unpinning idle organization version", extra={"version": v})
        for v, until in list(self.draining.items()):
            if now >= until and not self.inflight[v]:
                del self.draining[v]
                changed = True
        forget = max(self.idle_s, self.router.reconcile_interval_s)
        for org, entry in list(self.entries.items()):
            if now - entry.last_seen >= forget and (entry.refresh is None or entry.refresh.done()):
                del self.entries[org]  # its next request asks the registry again
        if changed and self.router.can_pin():
            await self.router.pin_now()

    async def close(self) -> None:
        tasks = [t for t in [*(h.load for h in self.hot.values()), *(e.refresh for e in self.entries.values())]
                 if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
