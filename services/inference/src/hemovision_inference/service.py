"""Inference domain logic: the active version (reconciled with the registry), model metadata,
and turning model outputs into classifications with the needs-review decision. No gRPC here."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hemovision_inference.errors import (
    BadTensor,
    ModelNotFound,
    ModelServerUnavailable,
    NoActiveModel,
    VersionNotLoaded,
)
from hemovision_inference.registry import RegistryUnavailable

log = logging.getLogger(__name__)

LOW_CONFIDENCE = "low_confidence"
OUT_OF_DISTRIBUTION = "out_of_distribution"


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
    )


@dataclass
class CellResult:
    label: str
    confidence: float
    probabilities: dict[str, float]
    needs_review: bool
    review_reasons: list[str]
    ood_score: float
    heatmap: np.ndarray | None = None


@dataclass
class ClassifyResult:
    name: str
    version: int
    results: list[CellResult]
    model_ms: float


class ModelRouter:
    """Which version new requests go to, kept in step with the registry on every replica.

    On a change of the registry's active version: pin {new, old (+ draining)} on the model
    server, wait until the new one is AVAILABLE (loaded and warm), switch, keep the old one
    pinned through the drain window, then pin {new} only. Registry unreachable or empty:
    follow the highest version the model server has AVAILABLE (no pinning).
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
        self.draining: dict[int, float] = {}  # version -> monotonic time its drain ends
        self.pinned: set[int] | None = None
        self.ready = False
        self.mode = "starting"
        self._metadata: dict[int, ModelMetadata] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._registry_error_logged = False
        self.switches: list[tuple[float, int | None, int]] = []
        self.missing_timeout_s = 30.0

    # ---- metadata --------------------------------------------------------------------------

    def metadata(self, version: int) -> ModelMetadata:
        cached = self._metadata.get(version)
        if cached is None:
            cached = read_metadata(self.model_base, self.model_name, version)
            self._metadata[version] = cached  # a version directory never changes once published
        return cached

    # ---- loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def poke(self) -> None:
        """Reconcile now (tests, or a push notification)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("reconcile failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.reconcile_interval_s)
            except TimeoutError:
                pass

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
        target = await self._registry_target()
        now = time.monotonic()
        for version, until in list(self.draining.items()):
            if now >= until:
                del self.draining[version]
        if target is None:
            # Fallback: follow the model server's own policy; no pinning.
            available = [v for v, s in statuses.items() if s.available and self._has_metadata(v)]
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
        if target != self.active:
            await self._activate(target, statuses)
            return
        wanted = {target, *self.draining}
        if not statuses.get(target) or not statuses[target].available or self.pinned != wanted:
            # Model server restarted, or a drain window ended: (re)pin.
            await self._pin(wanted)
            if not statuses.get(target) or not statuses[target].available:
                await self._set_ready(False)
                ok = await self._wait_available(target)
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

    def _has_metadata(self, version: int) -> bool:
        try:
            self.metadata(version)
            return True
        except VersionNotLoaded:
            return False

    async def _activate(self, target: int, statuses) -> None:
        previous = self.active
        wanted = {target, *self.draining}
        if previous is not None:
            wanted.add(previous)
        log.info("activating model version", extra={"from_version": previous, "to_version": target})
        await self._pin(wanted)
        if not await self._wait_available(target):
            return  # the old version keeps serving; retried next round
        try:
            self.metadata(target)
        except VersionNotLoaded as exc:
            log.error("new version has no usable metadata; not switching", extra={"error": exc.message})
            return
        self._switch(target)
        await self._set_ready(True)

    def _switch(self, target: int) -> None:
        previous = self.active
        self.active = target
        self.draining.pop(target, None)
        if previous is not None and previous != target:
            self.draining[previous] = time.monotonic() + self.drain_seconds
        self.switches.append((time.monotonic(), previous, target))
        log.info("routing switched", extra={"from_version": previous, "to_version": target})

    async def _pin(self, versions: set[int]) -> None:
        await self.model_server.pin(self.model_name, versions)
        self.pinned = set(versions)
        log.info("pinned model versions", extra={"versions": sorted(versions)})

    async def _wait_available(self, version: int) -> bool:
        """True once `version` is AVAILABLE. False on a failed load, a timeout, a version the model
        server never sees (not published) within missing_timeout_s, or a registry that moved on."""
        started = time.monotonic()
        deadline = started + self.load_timeout_s
        next_registry_check = started + self.reconcile_interval_s
        while time.monotonic() < deadline:
            if time.monotonic() >= next_registry_check and self.mode == "registry":
                next_registry_check = time.monotonic() + self.reconcile_interval_s
                target = await self._registry_target()
                if target is not None and target != version:
                    log.info("registry moved on while waiting", extra={"version": version, "target": target})
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
                    "model version failed to load; keeping the current one",
                    extra={"version": version, "error": status.error_message[:300]},
                )
                return False
            await asyncio.sleep(0.2)
        log.error("model version did not become AVAILABLE in time", extra={"version": version})
        return False


class InferenceService:
    def __init__(
        self, *, router: ModelRouter, model_server, model_name: str, max_images: int = 64, input_reference=None
    ) -> None:
        self.router = router
        self.model_server = model_server
        self.model_name = model_name
        self.max_images = max_images
        self.input_reference = input_reference  # input_check.InputReferences | None
        self._reference_warned: set[int] = set()

    def _input_distances(self, meta: ModelMetadata, images: np.ndarray) -> tuple[np.ndarray | None, float]:
        ref = self.input_reference.for_spec(meta.preprocessing) if self.input_reference is not None else None
        if ref is None or not meta.preprocessing.get("mean"):
            if meta.version not in self._reference_warned:
                self._reference_warned.add(meta.version)
                log.warning("input check not fitted for this version's pixel pipeline; model OOD score only",
                            extra={"version": meta.version})
            return None, float("inf")
        return ref.distance(images, meta.preprocessing["mean"], meta.preprocessing["std"]), ref.threshold

    def _name(self, name: str) -> str:
        name = name or self.model_name
        if name != self.model_name:
            raise ModelNotFound(f"unknown model {name!r}; this service serves {self.model_name!r}")
        return name

    def active_model(self, name: str = "") -> ModelMetadata:
        self._name(name)
        if self.router.active is None:
            raise NoActiveModel("no model version is loaded yet")
        return self.router.metadata(self.router.active)

    async def classify(self, *, name: str, version: int, images: np.ndarray, explain: bool = False) -> ClassifyResult:
        name = self._name(name)
        if version == 0:
            if self.router.active is None:
                raise NoActiveModel("no model version is loaded yet")
            version = self.router.active
        meta = self.router.metadata(version)
        s = meta.input_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise BadTensor(f"images must be float32 [N, {s}, {s}, 3] for version {version}, got {list(images.shape)}")
        if not 1 <= images.shape[0] <= self.max_images:
            raise BadTensor(f"between 1 and {self.max_images} images per request, got {images.shape[0]}")
        # The input check runs on a worker thread while the model server works on the same images,
        # instead of after it: its ~0.5 ms per call at concurrency 1 leaves the answer's critical path.
        checked = asyncio.get_running_loop().run_in_executor(None, self._input_distances, meta, images)
        if explain and meta.ood_from_logits:
            calls = [self.model_server.predict(name, version, "explain", images, ["probabilities", "heatmap", "logits"])]
        elif explain:
            calls = [self.model_server.predict(name, version, "explain", images, ["probabilities", "heatmap"]),
                     self.model_server.predict(name, version, "serving_default", images, ["ood_score"])]
        else:
            calls = [self.model_server.predict(name, version, "serving_default", images, ["probabilities", "ood_score"])]
        try:
            predictions = await asyncio.gather(*calls)
        finally:
            distances, check_threshold = await checked
        outputs = {k: v for p in reversed(predictions) for k, v in p.outputs.items()}
        if explain and meta.ood_from_logits:
            outputs["ood_score"] = energy_score(outputs["logits"])
        served, model_ms = predictions[0].version, max(p.model_ms for p in predictions)
        results = build_results(meta, outputs, distances, check_threshold)
        return ClassifyResult(name, served, results, model_ms)


def energy_score(logits: np.ndarray) -> np.ndarray:
    """-logsumexp(logits), numerically stable (the contract's energy OOD score)."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=-1, keepdims=True)
    return -(top[..., 0] + np.log(np.exp(logits - top).sum(axis=-1))).astype(np.float32)


def build_results(
    meta: ModelMetadata,
    outputs: dict[str, np.ndarray],
    input_distances: np.ndarray | None = None,
    input_threshold: float = float("inf"),
) -> list[CellResult]:
    """needs_review: confidence < review_threshold (LOW_CONFIDENCE); the model's ood_score over its
    ood_threshold, or the input plausibility distance over its threshold (OUT_OF_DISTRIBUTION)."""
    probabilities = np.asarray(outputs["probabilities"], dtype=np.float32)
    n = probabilities.shape[0]
    ood = np.asarray(outputs.get("ood_score", np.zeros(n)), dtype=np.float32).reshape(n)
    heatmaps = outputs.get("heatmap")
    results = []
    for i in range(n):
        row = probabilities[i]
        top = int(np.argmax(row))
        confidence = float(row[top])
        reasons = []
        if confidence < meta.review_threshold:
            reasons.append(LOW_CONFIDENCE)
        implausible = input_distances is not None and float(input_distances[i]) > input_threshold
        if float(ood[i]) > meta.ood_threshold or implausible:
            reasons.append(OUT_OF_DISTRIBUTION)
        results.append(
            CellResult(
                label=meta.class_names[top],
                confidence=confidence,
                probabilities={c: float(p) for c, p in zip(meta.class_names, row, strict=True)},
                needs_review=bool(reasons),
                review_reasons=reasons,
                ood_score=float(ood[i]),
                heatmap=None if heatmaps is None else np.asarray(heatmaps[i], dtype=np.float32),
            )
        )
    return results
