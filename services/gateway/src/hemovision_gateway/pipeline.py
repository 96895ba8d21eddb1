"""The single-image pipeline, shared by POST /api/v1/predictions and the batch worker (the short
route, docs/serving.md):

    inference.AnalyzeImages (the upload's bytes, once) -> history.RecordPrediction

Inference picks the caller's version, has preprocess prepare the image with that version's spec,
runs the model and renders the heatmap PNG; the gateway never sees a tensor. Concurrent uploads
of one caller share one AnalyzeImages and one history record call (coalescing.Coalescer:
dispatched at once when idle, grouped only while a call is running): every gRPC call costs
a fixed amount of CPU on both sides, more than one small cell's bytes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from hemovision.history.v1 import history_pb2
from hemovision.inference.v1 import inference_pb2

from hemovision_gateway.clients import Clients, bearer
from hemovision_gateway.coalescing import Coalescer
from hemovision_gateway.errors import ApiError, api_error_from_grpc, api_error_from_preprocess_item
from hemovision_gateway.images import check_image_bytes
from hemovision_gateway.schemas import Prediction
from hemovision_gateway.settings import Settings


@dataclass
class Upload:
    data: bytes
    filename: str = ""
    sample_id: str = ""
    slide_id: str = ""
    note: str = ""
    batch_id: str = ""


def _one_each(results, n: int, service: str):
    """A grouped call's answers, checked to be one per request (else 502, never a misattribution)."""
    if len(results) != n:
        raise ApiError(502, "upstream_error", f"the {service} service returned {len(results)} results for {n}")
    return results


@dataclass(frozen=True)
class Analyzed:
    """One upload's answer from inference, with the version that produced it."""

    model: inference_pb2.ModelInfo
    model_ms: float
    preprocess_ms: float
    result: inference_pb2.AnalyzedImage


# Every grouped call stays under half the 32 MiB gRPC message limit (answers included).
MAX_GROUP_BYTES = 16 * 1024 * 1024


class AnalyzeCoalescer:
    """Concurrent uploads of one caller share one inference.AnalyzeImages call (each image still
    accepted or rejected on its own), at most MAX_GROUP_BYTES of images a call."""

    def __init__(self, clients: Clients, settings: Settings, *, max_items: int, max_in_flight: int = 1) -> None:
        self.clients, self.settings = clients, settings
        self.coalescer: Coalescer[bytes, Analyzed] = Coalescer(
            self._run_group, max_items=max_items, max_in_flight=max_in_flight,
            weight=len, max_weight=MAX_GROUP_BYTES)

    async def analyze(self, token: str, image: bytes) -> Analyzed:
        return await self.coalescer.submit(token, image)  # a rejected image raises its ApiError

    async def _run_group(self, token: str, images: list[bytes]) -> list[Analyzed | ApiError]:
        try:
            answer = await self.clients.inference.AnalyzeImages(
                inference_pb2.AnalyzeImagesRequest(images=images, want_heatmap=True, want_model_image=True),
                metadata=bearer(token), timeout=self.settings.inference_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise api_error_from_grpc(exc) from None
        return [Analyzed(answer.model, answer.model_ms, answer.preprocess_ms, r.result)
                if r.WhichOneof("outcome") == "result" else api_error_from_preprocess_item(r.error)
                for r in _one_each(answer.results, len(images), "inference")]


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
        """Records that history answers UNAVAILABLE (its database restarting, history itself
        restarting) are sent again after RECORD_RETRY_DELAYS_S, with the same idempotency keys: a
        record whose commit was stored but not confirmed comes back as that record, never a second
        one (docs/reliability.md). Other errors are final at once."""
        outcomes: list[history_pb2.Prediction | ApiError | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        for delay in (*RECORD_RETRY_DELAYS_S, None):
            for i, outcome in zip(pending, await self._call(token, [requests[i] for i in pending]), strict=True):
                outcomes[i] = outcome
            pending = [i for i in pending if _retryable(outcomes[i])]
            if not pending or delay is None:
                break
            await asyncio.sleep(delay)
        return outcomes

    async def _call(self, token: str, requests: list[history_pb2.RecordPredictionRequest]
                    ) -> list[history_pb2.Prediction | ApiError]:
        try:
            if len(requests) == 1:
                return [await self.clients.history.RecordPrediction(
                    requests[0], metadata=bearer(token), timeout=self.settings.rpc_timeout_s)]
            answer = await self.clients.history.RecordPredictions(
                history_pb2.RecordPredictionsRequest(items=requests), metadata=bearer(token),
                timeout=self.settings.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            return [api_error_from_grpc(exc)] * len(requests)
        return [r.prediction if r.WhichOneof("outcome") == "prediction" else _item_error(r.error)
                for r in _one_each(answer.results, len(requests), "history")]


# Pauses before sending a record again that history answered UNAVAILABLE (~1.9 s in all: a
# PostgreSQL restart under load measured ~1 s, bench/reliability).
RECORD_RETRY_DELAYS_S = (0.2, 0.5, 1.2)


def _retryable(outcome: object) -> bool:
    return isinstance(outcome, ApiError) and outcome.status == 503


def _item_error(error: history_pb2.ItemError) -> ApiError:
    """A per-item failure, mapped like the status RecordPrediction would have answered."""
    code = next((c for c in grpc.StatusCode if c.value[0] == error.code), grpc.StatusCode.UNKNOWN)
    return api_error_from_grpc(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), error.message))


@dataclass
class Coalescing:
    """The per-process groupers of the pipeline (see the module docstring)."""

    analyze: AnalyzeCoalescer
    record: RecordCoalescer

    @classmethod
    def create(cls, clients: Clients, settings: Settings, max_items: int | None = None) -> Coalescing:
        """`max_items` overrides settings.coalesce_max_items (1: no grouping)."""
        n = settings.coalesce_max_items if max_items is None else max_items
        return cls(AnalyzeCoalescer(clients, settings, max_items=n, max_in_flight=settings.coalesce_analyze_in_flight),
                   RecordCoalescer(clients, settings, max_items=n, max_in_flight=settings.coalesce_record_in_flight))


async def run_prediction(
    clients: Clients,
    settings: Settings,
    *,
    token: str,
    upload: Upload,
    idempotency_key: str,
    coalescing: Coalescing | None = None,
) -> Prediction:
    """Classifies one upload and records it: the answer carries the gateway's own timings.
    Raises ApiError (bad input, downstream failure)."""
    t0 = time.perf_counter()
    coalescing = coalescing or Coalescing.create(clients, settings, max_items=1)
    check_image_bytes(upload.data, max_bytes=settings.max_image_bytes)
    answer = await coalescing.analyze.analyze(token, upload.data)
    inference_ms = (time.perf_counter() - t0) * 1000
    result, cell = answer.result, answer.result.classification
    timings = {
        "decode": result.decode_ms,
        "pixels": result.pixels_ms,
        "preprocess": answer.preprocess_ms,
        "model": answer.model_ms,
        "inference": inference_ms,
    }
    record = history_pb2.RecordPredictionRequest(
        idempotency_key=idempotency_key,
        prediction=history_pb2.Prediction(
            label=cell.label,
            confidence=cell.confidence,
            probabilities=dict(cell.probabilities),
            needs_review=result.needs_review,
            review_reasons=list(result.review_reasons),
            model=answer.model.model,
            timings_ms=timings,
            image_sha256=result.sha256,
            filename=upload.filename[:255],
            sample_id=upload.sample_id,
            slide_id=upload.slide_id,
            note=upload.note,
            batch_id=upload.batch_id,
            temperature=answer.model.temperature,
            ood_score=cell.ood_score,
        ),
        image_png=result.model_image_png,
        heatmap_png=result.heatmap_png,
    )
    t_hist = time.perf_counter()
    stored = await coalescing.record.record(token, record)
    history_ms = (time.perf_counter() - t_hist) * 1000
    return Prediction.from_pb(stored, timings_ms={
        **{k: round(v, 2) for k, v in timings.items()},
        "history": round(history_ms, 2),
        "total": round((time.perf_counter() - t0) * 1000, 2),
    })
