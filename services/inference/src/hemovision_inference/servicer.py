"""InferenceServicer: protobuf <-> domain objects only."""

from __future__ import annotations

from google.protobuf import json_format

from hemovision_tokens import optional_principal

from hemovision.common.v1 import common_pb2
from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision_inference import tensors
from hemovision_inference.errors import BadTensor
from hemovision_inference.service import (
    LOW_CONFIDENCE,
    OUT_OF_DISTRIBUTION,
    Caller,
    ClassifyResult,
    InferenceService,
    ModelMetadata,
)

_REASONS = {
    LOW_CONFIDENCE: inference_pb2.REVIEW_REASON_LOW_CONFIDENCE,
    OUT_OF_DISTRIBUTION: inference_pb2.REVIEW_REASON_OUT_OF_DISTRIBUTION,
}


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def GetActiveModel(self, request, context):
        return model_info(await self.service.active_model(request.model_name, caller=_caller()))

    async def Classify(self, request, context):
        return await self._classify(request, context, explain=False)

    async def Explain(self, request, context):
        return await self._classify(request, context, explain=True)

    async def _classify(self, request: inference_pb2.ClassifyRequest, context, *, explain: bool):
        if request.images.dtype != common_pb2.DTYPE_FLOAT32:
            raise BadTensor("images must be DTYPE_FLOAT32")
        try:
            images = tensors.from_common_tensor(request.images)
        except tensors.TensorError as exc:
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
        item = response.results.add(
            label=cell.label,
            confidence=cell.confidence,
            needs_review=cell.needs_review,
            review_reasons=[_REASONS[r] for r in cell.review_reasons],
            ood_score=cell.ood_score,
        )
        item.probabilities.update(cell.probabilities)
        if cell.heatmap is not None:
            item.heatmap.CopyFrom(tensors.to_common_tensor(cell.heatmap))
    return response


def model_info(meta: ModelMetadata) -> inference_pb2.ModelInfo:
    pre = meta.preprocessing
    spec = common_pb2.PreprocessSpec(
        version=int(pre.get("version", 1)),
        input_size=int(pre.get("input_size", meta.input_size)),
        crop=str(pre.get("crop", "")),
        blur_sigma=float(pre.get("blur_sigma") or 0.0),
        mean=[float(v) for v in pre.get("mean") or []],
        std=[float(v) for v in pre.get("std") or []],
    )
    stain = pre.get("stain_normalization")
    if isinstance(stain, dict) and stain.get("method"):
        spec.stain_normalization.CopyFrom(
            common_pb2.StainNormalization(
                method=str(stain["method"]),
                target_mean=[float(v) for v in stain.get("target_mean") or []],
                target_std=[float(v) for v in stain.get("target_std") or []],
            )
        )
    clahe = pre.get("clahe")
    if isinstance(clahe, dict):
        spec.clahe.CopyFrom(
            common_pb2.Clahe(clip_limit=float(clahe.get("clip_limit", 2.0)), tiles=int(clahe.get("tiles", 8)))
        )
    # spec v2 steps: the messages mirror hemovision.json's objects field for field
    for key, message in (("locate", spec.locate), ("white_balance", spec.white_balance),
                         ("stain_check", spec.stain_check)):
        if isinstance(pre.get(key), dict):
            json_format.ParseDict(pre[key], message)
    return inference_pb2.ModelInfo(
        model=common_pb2.ModelRef(name=meta.name, version=meta.version),
        class_names=meta.class_names,
        input_size=meta.input_size,
        preprocessing=spec,
        temperature=meta.temperature,
        review_threshold=meta.review_threshold,
        ood_threshold=meta.ood_threshold,
    )
