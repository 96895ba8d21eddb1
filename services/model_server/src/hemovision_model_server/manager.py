"""Which versions are loaded: polling, version policy, labels, load/warm-up, drain, unload, retries.

Lifecycle per version (TF Serving's ModelVersionStatus.State):
START (seen, complete, stable) -> LOADING (load + warm-up, off the event loop) -> AVAILABLE
-> (no longer wanted: stays AVAILABLE for explicit-version calls through the drain window,
no new unversioned traffic) -> UNLOADING (in-flight calls done) -> END.
A failed or refused load ends in END with error_code/error_message and is retried with
exponential backoff; versions already loaded keep serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from tensorflow_serving.apis import get_model_status_pb2

from hemovision_model_server import loader
from hemovision_model_server.batching import BatchScheduler
from hemovision_model_server.metrics import ModelServerMetrics

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State

# google.rpc / absl status codes used in StatusProto.error_code
OK, NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNAVAILABLE, UNKNOWN = 0, 5, 9, 8, 14, 2


class LookupFailed(Exception):
    """A Predict/metadata target that does not resolve; `code` is a grpc.StatusCode name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class VersionPolicy:
    kind: str = "latest"  # latest | specific | all
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, candidates: set[int]) -> set[int]:
        if self.kind == "all":
            return set(candidates)
        if self.kind == "specific":
            return {v for v in candidates if v in self.versions}
        return set(sorted(candidates)[-max(1, self.num_versions) :]) if candidates else set()


@dataclass
class VersionState:
    version: int
    path: Path
    state: int = State.START
    error_code: int = OK
    error_message: str = ""
    loaded: loader.LoadedVersion | None = None
    failures: int = 0
    next_attempt: float = 0.0
    drain_until: float | None = None
    loading: bool = False


@dataclass
class ModelEntry:
    name: str
    base_path: Path
    policy: VersionPolicy
    labels: dict[str, int] = field(default_factory=dict)
    versions: dict[int, VersionState] = field(default_factory=dict)
    observed: dict[int, tuple] = field(default_factory=dict)  # version -> fingerprint at the last poll
    wanted: set[int] = field(default_factory=set)


class ModelManager:
    def __init__(
        self,
        *,
        models: list[ModelEntry],
        batcher: BatchScheduler,
        metrics: ModelServerMetrics,
        poll_interval_s: float = 1.0,
        drain_seconds: float = 30.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
        memory_factor: float = 4.0,
        memory_reserve_mb: int = 256,
        warmup: bool = True,
        warmup_batch_sizes: tuple[int, ...] = (),
        load_nice: int = 0,
    ) -> None:
        self.models: dict[str, ModelEntry] = {m.name: m for m in models}
        self.batcher = batcher
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.drain_seconds = drain_seconds
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.memory_factor = memory_factor
        self.memory_reserve_mb = memory_reserve_mb
        self.warmup = warmup
        self.warmup_batch_sizes = warmup_batch_sizes
        self.load_nice = load_nice
        self.load_switch_interval_s = 0.0005
        self.reclaim_max_delay_s = 300.0
        self.reclaim_idle_s = 1.0
        self._reclaim_due: float | None = None
        self.last_request = 0.0  # monotonic time the last Predict finished (set by the Predictor)
        self._load_executor = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._load_lock = asyncio.Lock()
        self._poll_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._loads: set[asyncio.Task] = set()
        self.on_change: list = []

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.poll_once()
        await asyncio.sleep(min(self.poll_interval_s, 0.2))
        await self.poll_once()
        # Like TF Serving: start-up waits for the versions found at start (loaded or failed).
        await self.wait_idle()
        self._task = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for t in list(self._loads):
            t.cancel()
        self._load_executor.shutdown(wait=False, cancel_futures=True)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must survive anything
                log.exception("model poll failed")

    async def wait_idle(self) -> None:
        """Waits for the loads under way (tests)."""
        while self._loads:
            await asyncio.gather(*list(self._loads), return_exceptions=True)

    # ---- polling ---------------------------------------------------------------------------

    async def poll_once(self) -> None:
        async with self._poll_lock:
            for entry in list(self.models.values()):
                self._poll_model(entry)
        self._publish()
        await self._maybe_reclaim()

    async def _maybe_reclaim(self) -> None:
        now = time.monotonic()
        if self._reclaim_due is None or self._loads:
            return
        if now - self.last_request >= self.reclaim_idle_s or now >= self._reclaim_due:
            self._reclaim_due = None
            started = time.perf_counter()
            await asyncio.get_running_loop().run_in_executor(self._load_executor, _collect_unloaded)
            log.info("reclaimed unloaded versions", extra={"gc_seconds": round(time.perf_counter() - started, 3)})

    def _poll_model(self, entry: ModelEntry) -> None:
        now = time.monotonic()
        on_disk = loader.version_dirs(entry.base_path)
        candidates: set[int] = set()
        observed: dict[int, tuple] = {}
        for version, path in on_disk.items():
            reason = loader.incomplete_reason(path)
            if reason is not None:
                continue
            fp = loader.fingerprint(path)
            observed[version] = fp
            if entry.observed.get(version) == fp:
                candidates.add(version)  # complete and unchanged since the last poll
        entry.observed = observed
        # A loaded/serving version stays a candidate even while its directory is rewritten.
        for version, vs in entry.versions.items():
            if vs.loaded is not None and version in on_disk:
                candidates.add(version)
        wanted = entry.policy.select(candidates)
        entry.wanted = wanted
        for version in wanted:
            vs = entry.versions.get(version)
            if vs is None:
                vs = entry.versions[version] = VersionState(version, on_disk[version])
            vs.drain_until = None
            if vs.loaded is None and not vs.loading and now >= vs.next_attempt:
                self._start_load(entry, vs)
        # Unwanted versions: drain only once a wanted version serves (availability preserving).
        wanted_available = any(
            entry.versions[v].state == State.AVAILABLE for v in wanted if v in entry.versions
        )
        for version, vs in list(entry.versions.items()):
            if version in wanted:
                continue
            if vs.loaded is None:
                if not vs.loading:
                    if vs.state in (State.START,) or (vs.state == State.END and vs.error_code != OK):
                        del entry.versions[version]  # no longer wanted: forget the failure too
                continue
            if wanted and not wanted_available and version in on_disk:
                continue  # keep serving until its successor is AVAILABLE
            if vs.drain_until is None:
                vs.drain_until = now + self.drain_seconds
                log.info(
                    "draining version",
                    extra={"model": entry.name, "version": version, "drain_seconds": self.drain_seconds},
                )
            if now >= vs.drain_until and vs.loaded.inflight == 0:
                self._unload(entry, vs)

    # ---- load / unload ---------------------------------------------------------------------

    def _start_load(self, entry: ModelEntry, vs: VersionState) -> None:
        vs.loading = True
        vs.state = State.LOADING
        task = asyncio.create_task(self._load(entry, vs))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _load(self, entry: ModelEntry, vs: VersionState) -> None:
        async with self._load_lock:  # one load at a time: bounded memory and CPU
            started = time.perf_counter()
            try:
                size = await asyncio.to_thread(loader.dir_size, vs.path)
                need = size * self.memory_factor + self.memory_reserve_mb * 2**20
                available = psutil.virtual_memory().available
                if available < need:
                    serving = [v for v, s in entry.versions.items() if s.loaded is not None]
                    raise _Refused(
                        f"not enough memory to load version {vs.version}: needs about {need / 2**20:.0f} MiB "
                        f"(SavedModel {size / 2**20:.1f} MiB x {self.memory_factor:g} + "
                        f"{self.memory_reserve_mb} MiB reserve), {available / 2**20:.0f} MiB available; "
                        f"still serving versions {serving}"
                    )
                loop = asyncio.get_running_loop()
                # tf.saved_model.load is long stretches of Python holding the GIL: hand the GIL back
                # to the serving event loop more often while it runs (p99 during a swap).
                # The cyclic GC is off while loading: the load allocates millions of objects, and each
                # full collection it would trigger walks the whole TF heap with the GIL held (stalls
                # measured in docs/serving.md "Version lifecycle"). Afterwards everything alive is
                # frozen (gc.freeze), so later collections do not walk the loaded models either.
                switch_interval = sys.getswitchinterval()
                sys.setswitchinterval(self.load_switch_interval_s)
                gc.disable()
                try:
                    loaded = await loop.run_in_executor(
                        self._load_executor,
                        _load_and_warm,
                        entry.name,
                        vs,
                        self.warmup,
                        self.warmup_batch_sizes,
                        self.load_nice,
                    )
                finally:
                    sys.setswitchinterval(switch_interval)
                    gc.freeze()
                    gc.enable()
            except asyncio.CancelledError:
                vs.loading = False
                raise
            except Exception as exc:  # noqa: BLE001 - reported in GetModelStatus, retried
                vs.loading = False
                vs.failures += 1
                delay = min(self.retry_max_s, self.retry_initial_s * 2 ** (vs.failures - 1))
                vs.next_attempt = time.monotonic() + delay
                vs.state = State.END
                refused = isinstance(exc, _Refused)
                vs.error_code = RESOURCE_EXHAUSTED if refused else UNKNOWN
                vs.error_message = str(exc) if refused else f"failed to load {vs.path}: {type(exc).__name__}: {exc}"
                self.metrics.model_events.labels(entry.name, str(vs.version), "load_refused" if refused else "load_failed").inc()
                log.error(
                    "model version load failed; retrying",
                    extra={
                        "model": entry.name,
                        "version": vs.version,
                        "attempt": vs.failures,
                        "retry_in_s": round(delay, 1),
                        "error": vs.error_message[:500],
                    },
                )
                self._publish()
                return
            vs.loading = False
            if vs.version not in entry.wanted or self.models.get(entry.name) is not entry:
                # Unwanted while loading: drop it right away.
                del loaded
                vs.state = State.END
                gc.collect()
                return
            vs.loaded = loaded
            vs.failures = 0
            vs.state = State.AVAILABLE
            vs.error_code, vs.error_message = OK, ""
            elapsed = time.perf_counter() - started
            self.metrics.model_events.labels(entry.name, str(vs.version), "load").inc()
            self.metrics.load_seconds.labels(entry.name).observe(elapsed)
            log.info(
                "model version available",
                extra={"model": entry.name, "version": vs.version, "load_seconds": round(elapsed, 2)},
            )
        # Start draining predecessors at once rather than at the next poll.
        await self.poll_once()

    def _unload(self, entry: ModelEntry, vs: VersionState) -> None:
        vs.state = State.UNLOADING
        servable = vs.loaded
        vs.loaded = None
        if servable is not None:
            self.batcher.close_servable(servable)
        del servable
        # The unloaded model's Python objects were frozen at load (gc.freeze): reclaiming them means
        # unfreezing and a full collection that holds the GIL for a long pause (docs/serving.md
        # "Version lifecycle"). _maybe_reclaim runs it on the load thread (_collect_unloaded, which
        # freezes the survivors again) at an idle moment, or at most reclaim_max_delay_s later, never
        # in the middle of a swap.
        self._reclaim_due = time.monotonic() + self.reclaim_max_delay_s
        vs.state = State.END
        vs.drain_until = None
        self.metrics.model_events.labels(entry.name, str(vs.version), "unload").inc()
        log.info("model version unloaded", extra={"model": entry.name, "version": vs.version})

    def _publish(self) -> None:
        for entry in self.models.values():
            self.metrics.loaded_versions.labels(entry.name).set(
                sum(1 for vs in entry.versions.values() if vs.loaded is not None)
            )
        for callback in self.on_change:
            callback()

    # ---- config ----------------------------------------------------------------------------

    async def reload_config(self, entries: list[ModelEntry]) -> None:
        """Applies a ModelServerConfig: new models added, policies/labels replaced, absent models unloaded."""
        async with self._poll_lock:
            new_names = {e.name for e in entries}
            for name in list(self.models):
                if name not in new_names:
                    old = self.models.pop(name)
                    for vs in old.versions.values():
                        if vs.loaded is not None:
                            self._unload(old, vs)
            for e in entries:
                current = self.models.get(e.name)
                if current is not None and current.base_path == e.base_path:
                    current.policy = e.policy
                    current.labels = dict(e.labels)
                else:
                    if current is not None:
                        for vs in current.versions.values():
                            if vs.loaded is not None:
                                self._unload(current, vs)
                    self.models[e.name] = e
            for entry in self.models.values():
                # Versions already on disk and complete need not wait for another stable poll.
                for version, path in loader.version_dirs(entry.base_path).items():
                    if version not in entry.observed and loader.incomplete_reason(path) is None:
                        entry.observed[version] = loader.fingerprint(path)
                for vs in entry.versions.values():
                    vs.next_attempt = 0.0  # an explicit reload retries failed versions now
        await self.poll_once()

    # ---- lookups ---------------------------------------------------------------------------

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            raise LookupFailed("NOT_FOUND", f"Servable not found for request: model {name!r} is not configured")
        return entry

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> loader.LoadedVersion:
        """The servable a request targets: explicit version, label, or the newest wanted AVAILABLE one."""
        entry = self.entry(name)
        if label:
            if label not in entry.labels:
                raise LookupFailed("INVALID_ARGUMENT", f"unrecognized version label {label!r} for model {name!r}")
            version = entry.labels[label]
        if version is not None:
            vs = entry.versions.get(version)
            if vs is None or vs.loaded is None:
                raise LookupFailed("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
            return vs.loaded
        loaded = [vs for vs in entry.versions.values() if vs.loaded is not None]
        preferred = [vs for vs in loaded if vs.version in entry.wanted and vs.drain_until is None] or loaded
        if not preferred:
            raise LookupFailed("NOT_FOUND", f"Servable not found for request: Latest({name})")
        return max(preferred, key=lambda vs: vs.version).loaded

    def statuses(self, name: str, version: int | None = None) -> list[tuple[int, int, int, str]]:
        """(version, state, error_code, error_message), newest first."""
        entry = self.entry(name)
        rows = [
            (vs.version, vs.state, vs.error_code, vs.error_message)
            for vs in entry.versions.values()
            if version is None or vs.version == version
        ]
        if version is not None and not rows:
            raise LookupFailed("NOT_FOUND", f"Could not find version {version} of model {name}")
        if version is None and not rows:
            raise LookupFailed("NOT_FOUND", f"Could not find any versions of model {name}")
        return sorted(rows, reverse=True)

    def any_available(self) -> bool:
        return any(vs.loaded is not None for e in self.models.values() for vs in e.versions.values())


def _collect_unloaded() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class _Refused(Exception):
    """Load refused for lack of memory headroom."""


def _load_and_warm(
    name: str, vs: VersionState, warmup: bool, batch_sizes: tuple[int, ...] = (), nice: int = 0
) -> loader.LoadedVersion:
    # Optionally lower this thread's priority (Linux niceness is per thread). Off by default: a
    # de-scheduled loader thread that holds the GIL stalls the serving loop (priority inversion;
    # docs/serving.md "Version lifecycle").
    try:
        if nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError):
        pass
    loaded = loader.load_version(name, vs.version, vs.path)
    if warmup:
        runs = loader.warm_up(loaded, batch_sizes=batch_sizes)
        log.info("warm-up done", extra={"model": name, "version": vs.version, "requests": runs})
    return loaded
