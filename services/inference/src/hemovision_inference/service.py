"""Inference domain logic: serving a request with the version the router picks (router.py) and
turning model outputs into classifications with the needs-review decision. No gRPC here."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from hemovision_inference.errors import BadTensor, ModelNotFound, ModelServerUnavailable, VersionNotLoaded
from hemovision_inference.rollout import BASELINE, CANDIDATE, RolloutRecorder, ShadowRunner
from hemovision_inference.router import Caller, ModelMetadata, ModelRouter, Route, read_metadata
from hemovision_telemetry.metrics import observe_prediction

__all__ = ["Caller", "ClassifyResult", "InferenceService", "ModelMetadata", "ModelRouter", "build_results",
           "energy_score", "read_metadata"]

log = logging.getLogger(__name__)

LOW_CONFIDENCE = "low_confidence"
OUT_OF_DISTRIBUTION = "out_of_distribution"
# A request stops waiting for its organization's cold load this long before its deadline, to be
# answered by the platform's version instead (the load goes on for the next request).
SERVE_MARGIN_S = 2.0


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


class InferenceService:
    def __init__(
        self, *, router: ModelRouter, model_server, model_name: str, max_images: int = 64, input_reference=None,
        recorder: RolloutRecorder | None = None, shadow_max_inflight: int = 2,
    ) -> None:
        self.router = router
        self.recorder = recorder or RolloutRecorder(None)
        self.shadow = ShadowRunner(router, model_server, self.recorder, max_inflight=shadow_max_inflight)
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

    def check_name(self, name: str) -> str:
        name = name or self.model_name
        if name != self.model_name:
            raise ModelNotFound(f"unknown model {name!r}; this service serves {self.model_name!r}")
        return name

    async def active_model(self, name: str = "", caller: Caller | None = None) -> ModelMetadata:
        """The version the caller's requests go to now (its organization's, else the platform's)."""
        self.check_name(name)
        return self.router.metadata(await self.router.version_for(caller))

    async def classify(
        self,
        *,
        name: str,
        version: int,
        images: np.ndarray,
        explain: bool = False,
        caller: Caller | None = None,
        deadline_s: float | None = None,
    ) -> ClassifyResult:
        """version 0: the caller's organization's version, else the platform's. `deadline_s`: the
        request's time left; a cold organization load is waited for at most that minus SERVE_MARGIN_S."""
        name = self.check_name(name)
        route = await self.router.route(version, caller, self.load_wait_s(deadline_s))
        try:
            result = await self.serve(route, name, images, explain)
        except VersionNotLoaded:
            if version:  # the caller named the version: its precondition
                raise
            # Routed here, yet not on the model server (it restarted and is loading): retryable.
            raise ModelServerUnavailable(
                f"the model server is not serving model version {route.version} right now "
                "(starting or reloading it); try again shortly") from None
        finally:
            self.router.release(route)
        for cell in result.results:
            observe_prediction(label=cell.label, model_version=str(result.version),
                               organization=caller.organization_id if caller else "", flagged=cell.needs_review,
                               confidence=cell.confidence)
        return result

    @staticmethod
    def load_wait_s(deadline_s: float | None) -> float | None:
        """How long a request may wait for its organization's cold version to load."""
        return None if deadline_s is None else max(0.0, deadline_s - SERVE_MARGIN_S)

    async def serve(self, route: Route, name: str, images: np.ndarray, explain: bool) -> ClassifyResult:
        """Runs the model for a route the caller holds (router.route ... router.release). During a
        rollout it also counts the call for its role and, in shadow mode, hands the same batch to
        the candidate in the background (never awaited here)."""
        try:
            result = await self._classify(name, route.version, images, explain)
        except VersionNotLoaded:
            if route.role == CANDIDATE and route.rollout is not None:
                # The canary's candidate is not on the model server (it restarted): the active
                # version answers; no canary traffic until the candidate is AVAILABLE again.
                self.router.rollout_lost(route.rollout)
                platform = self.router.active
                if platform is None or not self.router.compatible(route.version, platform):
                    raise
                log.warning("canary candidate not on the model server; served by the active version",
                            extra={"version": route.version, "platform_version": platform})
                return await self._classify(name, platform, images, explain)
            platform = self.router.active
            if not route.adapted or platform is None or not self.router.compatible(route.version, platform):
                raise
            # The model server lost the organization's version (it restarted): never a failed
            # request because of adaptation; it is loaded again for the next one.
            self.router.orgs.lost(route.version)
            log.warning("organization version not on the model server; served by the platform version",
                        extra={"version": route.version, "platform_version": platform})
            return await self._classify(name, platform, images, explain)
        rollout = route.rollout
        if rollout is not None:
            self.recorder.served(rollout.id, route.role, len(result.results), result.model_ms)
            if (rollout.mode == "shadow" and route.role == BASELINE and self.router.rollout is rollout
                    and self.router.rollout_ready):
                self.shadow.submit(rollout, name, images, explain, [c.label for c in result.results])
        return result

    async def _classify(self, name: str, version: int, images: np.ndarray, explain: bool) -> ClassifyResult:
        meta = self.router.metadata(version)
        s = meta.input_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise BadTensor(f"images must be float32 [N, {s}, {s}, 3] for version {version}, got {list(images.shape)}")
        if not 1 <= images.shape[0] <= self.max_images:
            raise BadTensor(f"between 1 and {self.max_images} images per request, got {images.shape[0]}")
        # The input check runs on a worker thread while the model server works on the same images,
        # instead of after it: its cost leaves the critical path (docs/serving.md "Benchmarks").
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
