"""InferenceServicer: protobuf <-> domain objects only."""

from __future__ import annotations

from hemovision_tokens import optional_principal

from hemovision.common.v1 import common_pb2
from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision.preprocess.v1 import preprocess_pb2
from hemovision_contracts.tensors import TensorError, from_common_tensor, to_common_tensor
from hemovision_inference.analysis import Analysis, ImageAnalyzer, Rejected
from hemovision_inference.errors import BadTensor
from hemovision_inference.model_info import ModelInfos
from hemovision_inference.service import (
    LOW_CONFIDENCE,
    CellResult,
    OUT_OF_DISTRIBUTION,
    Caller,
    ClassifyResult,
    InferenceService,
)

_REASONS = {
    LOW_CONFIDENCE: inference_pb2.REVIEW_REASON_LOW_CONFIDENCE,
    OUT_OF_DISTRIBUTION: inference_pb2.REVIEW_REASON_OUT_OF_DISTRIBUTION,
}


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, service: InferenceService, analyzer: ImageAnalyzer | None = None) -> None:
        self.service = service
        self.analyzer = analyzer
        self.infos = analyzer.infos if analyzer is not None else ModelInfos()

    async def GetActiveModel(self, request, context):
        return self.infos.get(await self.service.active_model(request.model_name, caller=_caller()))

    async def Classify(self, request, context):
        return await self._classify(request, context, explain=False)

    async def Explain(self, request, context):
        return await self._classify(request, context, explain=True)

    async def AnalyzeImages(self, request: inference_pb2.AnalyzeImagesRequest, context):
        if self.analyzer is None:
            raise BadTensor("this inference service has no preprocess service configured; send tensors to Explain")
        analysis = await self.analyzer.analyze(
            list(request.images), name=request.model_name, want_heatmap=request.want_heatmap,
            want_model_image=request.want_model_image, caller=_caller(), deadline_s=context.time_remaining())
        return analyze_response(analysis, self.infos.get(analysis.meta))

    async def _classify(self, request: inference_pb2.ClassifyRequest, context, *, explain: bool):
        if request.images.dtype != common_pb2.DTYPE_FLOAT32:
            raise BadTensor("images must be DTYPE_FLOAT32")
        try:
            images = from_common_tensor(request.images)
        except TensorError as exc:
            raise BadTensor(str(exc)) from None
        result = await self.service.classify(
            name=request.model.name, version=request.model.version, images=images, explain=explain,
            caller=_caller(), deadline_s=context.time_remaining(),
        )
        return classify_response(result)


def _caller() -> Caller | None:
    """The verified token's organization picks the version (None when auth is off: the platform's)."""
    principal = optional_principal()
    return None if principal is None else Caller(organization_id=principal.organization_id, token=principal.token)


def classify_response(result: ClassifyResult) -> inference_pb2.ClassifyResponse:
    response = inference_pb2.ClassifyResponse(
        model=common_pb2.ModelRef(name=result.name, version=result.version), model_ms=result.model_ms
    )
    for cell in result.results:
        item = _classification(cell, response.results.add())
        if cell.heatmap is not None:
            item.heatmap.CopyFrom(to_common_tensor(cell.heatmap))
    return response


def _classification(cell: CellResult, item: inference_pb2.Classification) -> inference_pb2.Classification:
    item.label, item.confidence, item.needs_review = cell.label, cell.confidence, cell.needs_review
    item.review_reasons.extend(_REASONS[r] for r in cell.review_reasons)
    item.ood_score = cell.ood_score
    item.probabilities.update(cell.probabilities)
    return item


def analyze_response(analysis: Analysis, info: inference_pb2.ModelInfo) -> inference_pb2.AnalyzeImagesResponse:
    response = inference_pb2.AnalyzeImagesResponse(model_ms=analysis.model_ms, preprocess_ms=analysis.preprocess_ms)
    response.model.CopyFrom(info)
    for outcome in analysis.outcomes:
        slot = response.results.add()
        if isinstance(outcome, Rejected):
            slot.error.CopyFrom(preprocess_pb2.PreprocessError(reason=outcome.reason, message=outcome.message))
            continue
        result = slot.result
        _classification(outcome.cell, result.classification)
        prepared = outcome.prepared
        result.heatmap_png, result.model_image_png, result.sha256 = (
            outcome.heatmap_png, prepared.model_image_png, prepared.sha256)
        result.needs_review = outcome.needs_review
        result.review_reasons.extend(outcome.review_reasons)
        result.decode_ms, result.pixels_ms = prepared.decode_ms, prepared.pixels_ms
    return response
