"""The single-image pipeline, shared by POST /api/v1/predictions and the batch worker:

    inference.GetActiveModel (cached) -> preprocess.Preprocess -> inference.Explain
    -> heatmap PNG -> history.RecordPrediction (idempotent on the key)

Concurrent uploads of one caller share their Preprocess, Explain and history record calls
(coalescing.Coalescer: dispatched at once when idle, grouped only while a call is running).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc

from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from hemovision.inference.v1 import inference_pb2
from hemovision.preprocess.v1 import preprocess_pb2

from hemovision_gateway import views
from hemovision_gateway.clients import Clients, bearer
from hemovision_gateway.coalescing import Coalescer
from hemovision_gateway.errors import (
    ApiError,
    api_error_from_grpc,
    api_error_from_preprocess,
    api_error_from_preprocess_item,
)
from hemovision_gateway.images import check_image_bytes, heatmap_png, tensor_to_array
from hemovision_gateway.settings import Settings

log = logging.getLogger(__name__)

REVIEW_REASONS = {
    inference_pb2.REVIEW_REASON_LOW_CONFIDENCE: "low_confidence",
    inference_pb2.REVIEW_REASON_OUT_OF_DISTRIBUTION: "out_of_distribution",
}


@dataclass
class Upload:
    data: bytes
    filename: str = ""
    sample_id: str = ""
    slide_id: str = ""
    note: str = ""
    batch_id: str = ""


class ActiveModelCache:
    """GetActiveModel answers reused for a couple of seconds, per organization: inference answers
    each organization with its own (adapted) version, and the answer pins the version Explain
    is asked for, so one organization's answer must never prepare another's request."""

    MAX_ENTRIES = 4096

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[str, tuple[float, Any]] = {}

    def invalidate(self, organization_id: str | None = None) -> None:
        """One organization's answer, or (None) every one: the platform's version changed."""
        if organization_id is None:
            self._values.clear()
        else:
            self._values.pop(organization_id, None)

    async def get(self, clients: Clients, settings: Settings, token: str,
                  organization_id: str = "") -> inference_pb2.ModelInfo:
        now = time.monotonic()
        hit = self._values.get(organization_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = await clients.inference.GetActiveModel(
            inference_pb2.GetActiveModelRequest(), metadata=bearer(token), timeout=settings.rpc_timeout_s
        )
        if len(self._values) >= self.MAX_ENTRIES:  # bounded: drop the expired ones, or all
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
            if len(self._values) >= self.MAX_ENTRIES:
                self._values.clear()
        self._values[organization_id] = (now + self.ttl, info)
        return info


@dataclass(frozen=True)
class Explained:
    """One cell's answer from inference, with the version that produced it."""

    model: common_pb2.ModelRef
    model_ms: float
    result: inference_pb2.Classification


async def _explain_call(clients: Clients, settings: Settings, token: str, request: inference_pb2.ClassifyRequest):
    try:
        return await clients.inference.Explain(request, metadata=bearer(token), timeout=settings.inference_timeout_s)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # a model without the explain signature
            return await clients.inference.Classify(
                request, metadata=bearer(token), timeout=settings.inference_timeout_s
            )
        raise


def _one_each(results, n: int, service: str):
    """A grouped call's answers, checked to be one per request (else 502, never a misattribution)."""
    if len(results) != n:
        raise ApiError(502, "upstream_error", f"the {service} service returned {len(results)} results for {n}")
    return results


def _explained(answer: inference_pb2.ClassifyResponse, n: int) -> list[Explained]:
    return [Explained(answer.model, answer.model_ms, r) for r in _one_each(answer.results, n, "inference")]


# Every grouped call stays under half the 32 MiB gRPC message limit (answers included).
MAX_GROUP_BYTES = 16 * 1024 * 1024


class PreprocessCoalescer:
    """Concurrent uploads of one caller share one preprocess.PreprocessBatch call (each image still
    accepted or rejected on its own), at most MAX_GROUP_BYTES of images a call; an image alone
    goes by Preprocess."""

    def __init__(self, clients: Clients, settings: Settings, *, max_items: int, max_in_flight: int = 1) -> None:
        self.clients, self.settings = clients, settings
        self.coalescer: Coalescer[preprocess_pb2.PreprocessRequest, preprocess_pb2.PreprocessResponse] = (
            Coalescer(self._run_group, max_items=max_items, max_in_flight=max_in_flight,
                      weight=lambda r: len(r.image), max_weight=MAX_GROUP_BYTES))

    async def preprocess(self, token: str, request: preprocess_pb2.PreprocessRequest) -> preprocess_pb2.PreprocessResponse:
        return await self.coalescer.submit(token, request)  # a rejected image raises its ApiError

    async def _run_group(self, token: str, requests: list[preprocess_pb2.PreprocessRequest]):
        if len(requests) == 1:
            try:
                return [await self.clients.preprocess.Preprocess(
                    requests[0], metadata=bearer(token), timeout=self.settings.rpc_timeout_s)]
            except grpc.aio.AioRpcError as exc:
                return [api_error_from_preprocess(exc)]
        try:
            answer = await self.clients.preprocess.PreprocessBatch(
                preprocess_pb2.PreprocessBatchRequest(items=requests), metadata=bearer(token),
                timeout=self.settings.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise api_error_from_preprocess(exc) from None
        return [r.result if r.WhichOneof("outcome") == "result" else api_error_from_preprocess_item(r.error)
                for r in _one_each(answer.results, len(requests), "preprocess")]


class ExplainCoalescer:
    """Concurrent uploads of one caller, prepared for one model version, share one Explain call
    (their tensors stacked along axis 0): one hop instead of N, and a bigger batch for the model."""

    def __init__(self, clients: Clients, settings: Settings, *, max_images: int, max_in_flight: int = 1) -> None:
        self.clients, self.settings = clients, settings
        self.coalescer: Coalescer[common_pb2.Tensor, Explained] = Coalescer(
            self._run_group, max_items=max_images, max_in_flight=max_in_flight,
            weight=lambda t: len(t.data), max_weight=MAX_GROUP_BYTES,  # big-input models: fewer per call
        )

    async def explain(self, token: str, model: common_pb2.ModelRef, tensor: common_pb2.Tensor) -> Explained:
        shape = tuple(tensor.shape)
        if len(shape) != 4 or shape[0] != 1:  # only single images are stacked
            return (await self.explain_one(token, model, tensor))[0]
        key = (token, model.name, model.version, shape[1:], tensor.dtype)
        return await self.coalescer.submit(key, tensor)

    async def explain_one(self, token: str, model: common_pb2.ModelRef, tensor: common_pb2.Tensor) -> list[Explained]:
        answer = await _explain_call(self.clients, self.settings, token,
                                     inference_pb2.ClassifyRequest(model=model, images=tensor))
        return _explained(answer, 1 if len(tensor.shape) < 4 else int(tensor.shape[0]))

    async def _run_group(self, key, tensors: list[common_pb2.Tensor]) -> list[Explained]:
        token, name, version, inner, dtype = key
        if len(tensors) == 1:
            return await self.explain_one(token, common_pb2.ModelRef(name=name, version=version), tensors[0])
        stacked = common_pb2.Tensor(shape=[len(tensors), *inner], dtype=dtype, data=b"".join(t.data for t in tensors))
        answer = await _explain_call(self.clients, self.settings, token, inference_pb2.ClassifyRequest(
            model=common_pb2.ModelRef(name=name, version=version), images=stacked))
        return _explained(answer, len(tensors))


class RecordCoalescer:
    """Concurrent records of one caller share one history.RecordPredictions call (each item still
    succeeds or fails on its own); a record alone goes by RecordPrediction."""

    def __init__(self, clients: Clients, settings: Settings, *, max_items: int, max_in_flight: int = 1) -> None:
        self.clients, self.settings = clients, settings
        self.coalescer: Coalescer[history_pb2.RecordPredictionRequest, history_pb2.Prediction] = Coalescer(
            self._run_group, max_items=max_items, max_in_flight=max_in_flight,
            weight=lambda r: len(r.image_png) + len(r.heatmap_png), max_weight=MAX_GROUP_BYTES,
        )

    async def record(self, token: str, request: history_pb2.RecordPredictionRequest) -> history_pb2.Prediction:
        return await self.coalescer.submit(token, request)  # a refused record raises its ApiError

    async def _run_group(self, token: str, requests: list[history_pb2.RecordPredictionRequest]):
        try:
            if len(requests) == 1:
                return [await self.clients.history.RecordPrediction(
                    requests[0], metadata=bearer(token), timeout=self.settings.rpc_timeout_s)]
            answer = await self.clients.history.RecordPredictions(
                history_pb2.RecordPredictionsRequest(items=requests), metadata=bearer(token),
                timeout=self.settings.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise api_error_from_grpc(exc) from None
        return [r.prediction if r.WhichOneof("outcome") == "prediction" else _item_error(r.error)
                for r in _one_each(answer.results, len(requests), "history")]


def _item_error(error: history_pb2.ItemError) -> ApiError:
    """A per-item failure, mapped like the status RecordPrediction would have answered."""
    code = next((c for c in grpc.StatusCode if c.value[0] == error.code), grpc.StatusCode.UNKNOWN)
    return api_error_from_grpc(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), error.message))


@dataclass
class Coalescing:
    """The per-process groupers of the pipeline (see the module docstring)."""

    preprocess: PreprocessCoalescer
    explain: ExplainCoalescer
    record: RecordCoalescer

    @classmethod
    def create(cls, clients: Clients, settings: Settings, max_items: int | None = None) -> Coalescing:
        """`max_items` overrides settings.coalesce_max_items (1: no grouping)."""
        n = settings.coalesce_max_items if max_items is None else max_items
        return cls(PreprocessCoalescer(clients, settings, max_items=n, max_in_flight=settings.coalesce_preprocess_in_flight),
                   ExplainCoalescer(clients, settings, max_images=n, max_in_flight=settings.coalesce_explain_in_flight),
                   RecordCoalescer(clients, settings, max_items=n, max_in_flight=settings.coalesce_record_in_flight))


async def run_prediction(
    clients: Clients,
    settings: Settings,
    cache: ActiveModelCache,
    *,
    token: str,
    upload: Upload,
    idempotency_key: str,
    coalescing: Coalescing | None = None,
    organization_id: str = "",
) -> dict[str, Any]:
    """Classifies one upload and records it. Raises ApiError (bad input, downstream failure).
    `organization_id`: the caller's (the token's), the key of its cached active model."""
    t0 = time.perf_counter()
    coalescing = coalescing or Coalescing.create(clients, settings, max_items=1)
    check_image_bytes(upload.data, max_bytes=settings.max_image_bytes)
    try:
        info = await cache.get(clients, settings, token, organization_id)
    except grpc.aio.AioRpcError as exc:
        raise api_error_from_grpc(exc) from None

    for attempt in (0, 1):
        t_pre = time.perf_counter()
        pre = await coalescing.preprocess.preprocess(
            token, preprocess_pb2.PreprocessRequest(image=upload.data, spec=info.preprocessing, want_model_image=True))
        preprocess_ms = (time.perf_counter() - t_pre) * 1000
        t_inf = time.perf_counter()
        try:
            answer = await coalescing.explain.explain(token, info.model, pre.tensor)
        except grpc.aio.AioRpcError as exc:
            # The version we prepared for was swapped out: prepare again for the new one, once.
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and attempt == 0:
                cache.invalidate(organization_id)
                info = await cache.get(clients, settings, token, organization_id)
                continue
            raise api_error_from_grpc(exc) from None
        inference_ms = (time.perf_counter() - t_inf) * 1000
        break
    result = answer.result
    model = answer.model if answer.model.name else info.model

    heatmap = b""
    if result.heatmap.data:
        try:
            heatmap = heatmap_png(tensor_to_array(result.heatmap), size=info.input_size or None)
        except ValueError:
            log.warning("unusable heatmap from inference", extra={"shape": list(result.heatmap.shape)})

    timings = {
        "decode": pre.decode_ms,
        "pixels": pre.pixels_ms,
        "preprocess": preprocess_ms,
        "model": answer.model_ms,
        "inference": inference_ms,
    }
    record = history_pb2.RecordPredictionRequest(
        idempotency_key=idempotency_key,
        prediction=history_pb2.Prediction(
            label=result.label,
            confidence=result.confidence,
            probabilities=dict(result.probabilities),
            # the model's own reasons, then what the pixel pipeline saw (cell not found, odd size)
            needs_review=result.needs_review or bool(pre.review_reasons),
            review_reasons=[REVIEW_REASONS.get(r, "unspecified") for r in result.review_reasons]
            + list(pre.review_reasons),
            model=model,
            timings_ms=timings,
            image_sha256=pre.sha256,
            filename=upload.filename[:255],
            sample_id=upload.sample_id,
            slide_id=upload.slide_id,
            note=upload.note,
            batch_id=upload.batch_id,
            temperature=info.temperature,
            ood_score=result.ood_score,
        ),
        image_png=pre.model_image_png,
        heatmap_png=heatmap,
    )
    t_hist = time.perf_counter()
    stored = await coalescing.record.record(token, record)
    history_ms = (time.perf_counter() - t_hist) * 1000
    body = views.prediction(stored)
    body["timings_ms"] = {
        **{k: round(v, 2) for k, v in timings.items()},
        "history": round(history_ms, 2),
        "total": round((time.perf_counter() - t0) * 1000, 2),
    }
    return body
