"""The short route (docs/serving.md): encoded images in, answers with their heatmap PNGs out.

    route (the caller's version) -> preprocess.PreprocessBatch with that version's spec
    -> model server (explain, else serving_default) -> heatmap PNGs

The route is held from preprocessing to the model call, so the version the tensors were made
for stays loaded; if it is lost anyway (model server restarted, a drain that ended), the call
is retried once on the caller's version now, preprocessing again only when the pixel pipeline
differs. The Explain -> Classify fallback (a model without the explain signature) lives here too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from hemovision_grpc_server import InvalidArgument
from hemovision_telemetry.metrics import observe_prediction
from hemovision_inference.errors import ModelServerUnavailable, SignatureMissing, VersionNotLoaded
from hemovision_inference.heatmaps import heatmap_png
from hemovision_inference.model_info import ModelInfos
from hemovision_inference.preprocess_client import Prepared, PreprocessClient
from hemovision_inference.router import Route
from hemovision_inference.service import Caller, CellResult, InferenceService, ModelMetadata

log = logging.getLogger(__name__)

# Half the 32 MiB gRPC message limit, like every grouped call (answers included).
MAX_REQUEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Rejected:
    """An image the pixel pipeline refused; `reason` is the preprocess service's code."""

    reason: str
    message: str


@dataclass(frozen=True)
class AnalyzedCell:
    cell: CellResult
    heatmap_png: bytes
    prepared: Prepared
    needs_review: bool
    review_reasons: list[str]  # the model's, then the pixel pipeline's


@dataclass(frozen=True)
class Analysis:
    meta: ModelMetadata  # the version that answered
    outcomes: list[AnalyzedCell | Rejected]
    model_ms: float
    preprocess_ms: float


class ImageAnalyzer:
    def __init__(self, service: InferenceService, preprocess: PreprocessClient, *, max_images: int = 64,
                 infos: ModelInfos | None = None) -> None:
        self.service = service
        self.infos = infos or ModelInfos()
        self.router = service.router
        self.preprocess = preprocess
        self.max_images = max_images

    async def analyze(
        self, images: list[bytes], *, name: str = "", want_heatmap: bool, want_model_image: bool,
        caller: Caller | None, deadline_s: float | None,
    ) -> Analysis:
        if not 1 <= len(images) <= self.max_images:
            raise InvalidArgument(f"between 1 and {self.max_images} images per call, got {len(images)}")
        if sum(len(b) for b in images) > MAX_REQUEST_BYTES:
            raise InvalidArgument(f"at most {MAX_REQUEST_BYTES // (1024 * 1024)} MiB of images per call")
        name = self.service.check_name(name)
        ends = None if deadline_s is None else time.monotonic() + deadline_s
        # any_spec: the images are prepared below with the routed version's own spec (a canary
        # candidate with another pixel pipeline may answer).
        route = await self.router.route(0, caller, self.service.load_wait_s(deadline_s), any_spec=True)
        try:
            t0 = time.perf_counter()
            prepared = await self._prepare(route.version, images, want_model_image, caller, ends)
            preprocess_ms = (time.perf_counter() - t0) * 1000
            accepted = [p for p in prepared if isinstance(p, Prepared)]
            if not accepted:
                return Analysis(self.router.metadata(route.version), prepared, 0.0, preprocess_ms)
            for attempt in (0, 1):
                try:
                    result = await self._run(route, name, np.stack([p.tensor for p in accepted]), want_heatmap)
                    break
                except VersionNotLoaded:
                    if attempt:
                        # The caller named no version: inference routed it, and the model server
                        # does not serve that version right now (it restarted and is loading it,
                        # or it is reloading): retryable, not the caller's precondition (was 409).
                        raise ModelServerUnavailable(
                            f"the model server is not serving model version {route.version} right now "
                            "(starting or reloading it); try again shortly") from None
                    # Swapped out between preprocessing and the model call: once more, on the
                    # caller's version now; its pixel pipeline may differ, then prepare again.
                    new = await self.router.route(0, caller, self.service.load_wait_s(_left(ends)), any_spec=True)
                    old, route = route, new
                    self.router.release(old)
                    log.info("version swapped out under a request; retried on the new one",
                             extra={"version": old.version, "new_version": route.version})
                    if not self.router.compatible(old.version, route.version):
                        t0 = time.perf_counter()
                        prepared = await self._prepare(route.version, images, want_model_image, caller, ends)
                        preprocess_ms += (time.perf_counter() - t0) * 1000
                        accepted = [p for p in prepared if isinstance(p, Prepared)]
                        if not accepted:
                            return Analysis(self.router.metadata(route.version), prepared, 0.0, preprocess_ms)
        finally:
            self.router.release(route)
        meta = self.router.metadata(result.version)
        cells = iter(result.results)
        outcomes = [p if isinstance(p, Rejected) else _analyzed(next(cells), p, meta) for p in prepared]
        for out in outcomes:
            if isinstance(out, AnalyzedCell):
                observe_prediction(label=out.cell.label, model_version=str(result.version),
                                   organization=caller.organization_id if caller else "", flagged=out.needs_review,
                                   confidence=out.cell.confidence)
        return Analysis(meta, outcomes, result.model_ms, preprocess_ms)

    async def _run(self, route: Route, name: str, batch: np.ndarray, want_heatmap: bool):
        if want_heatmap:
            try:
                return await self.service.serve(route, name, batch, explain=True)
            except SignatureMissing:  # a model exported without `explain`: the answer, no heatmap
                pass
        return await self.service.serve(route, name, batch, explain=False)

    async def _prepare(self, version: int, images: list[bytes], want_model_image: bool, caller: Caller | None,
                       ends: float | None) -> list[Prepared | Rejected]:
        spec = self.infos.get(self.router.metadata(version)).preprocessing
        answers = await self.preprocess.prepare(
            images, spec, want_model_image=want_model_image,
            token=caller.token if caller is not None else None, deadline_s=_left(ends))
        return [a if isinstance(a, Prepared) else Rejected(a.reason, a.message) for a in answers]


def _left(ends: float | None) -> float | None:
    return None if ends is None else ends - time.monotonic()


def _analyzed(cell: CellResult, prepared: Prepared, meta: ModelMetadata) -> AnalyzedCell:
    heatmap = b""
    if cell.heatmap is not None:
        try:
            heatmap = heatmap_png(cell.heatmap, size=meta.input_size or None)
        except ValueError:
            log.warning("unusable heatmap from the model", extra={"shape": list(np.shape(cell.heatmap))})
    reasons = list(cell.review_reasons) + list(prepared.review_reasons)
    return AnalyzedCell(cell, heatmap, prepared, cell.needs_review or bool(prepared.review_reasons), reasons)
