"""PreprocessService: protobuf <-> PreprocessCore."""

from __future__ import annotations

import grpc
from google.protobuf import json_format

from hemovision.common.v1 import common_pb2
from hemovision.preprocess.v1 import preprocess_pb2, preprocess_pb2_grpc
from hemovision_grpc_server import InvalidArgument
from hemovision_pixels import PreprocessSpec
from hemovision_preprocess.errors import ImageInvalid
from hemovision_preprocess.service import PreparedImage, PreprocessCore


def spec_from_proto(spec: common_pb2.PreprocessSpec) -> dict:
    """The proto mirrors hemovision.json's "preprocessing" dict field for field."""
    d = json_format.MessageToDict(spec, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    d.setdefault("stain_normalization", None)
    d.setdefault("clahe", None)
    d.setdefault("locate", None)
    d.setdefault("white_balance", None)
    d.setdefault("stain_check", None)
    return d


def _response(prepared: PreparedImage) -> preprocess_pb2.PreprocessResponse:
    tensor = prepared.tensor
    return preprocess_pb2.PreprocessResponse(
        tensor=common_pb2.Tensor(
            shape=list(tensor.shape), dtype=common_pb2.DTYPE_FLOAT32, data=tensor.astype("<f4").tobytes()
        ),
        original_width=prepared.original_width,
        original_height=prepared.original_height,
        sha256=prepared.sha256,
        format=prepared.format,
        thumbnail_jpeg=prepared.thumbnail_jpeg,
        model_image_png=prepared.model_image_png,
        decode_ms=prepared.decode_ms,
        pixels_ms=prepared.pixels_ms,
        review_reasons=list(prepared.review_reasons),
        cell_found=prepared.cell_found,
        cell_zoom=prepared.cell_zoom,
    )


_SPEC_CACHE_SIZE = 32
MAX_BATCH_ITEMS = 64


class PreprocessServicer(preprocess_pb2_grpc.PreprocessServiceServicer):
    def __init__(self, core: PreprocessCore) -> None:
        self.core = core
        # Parsed specs by their serialized proto: every request carries the active version's spec,
        # and proto -> dict -> PreprocessSpec cost more than the pixel work of a small cell.
        self._specs: dict[bytes, PreprocessSpec] = {}

    def _spec(self, request: preprocess_pb2.PreprocessRequest) -> PreprocessSpec:
        if not request.HasField("spec"):
            raise InvalidArgument("spec is required: ask the inference service for the active model's spec")
        raw = request.spec.SerializeToString(deterministic=True)
        spec = self._specs.get(raw)
        if spec is None:
            spec = self.core.parse_spec(spec_from_proto(request.spec))  # invalid specs raise, never cached
            if len(self._specs) >= _SPEC_CACHE_SIZE:
                self._specs.pop(next(iter(self._specs)))
            self._specs[raw] = spec
        return spec

    async def Preprocess(
        self, request: preprocess_pb2.PreprocessRequest, context: grpc.aio.ServicerContext
    ) -> preprocess_pb2.PreprocessResponse:
        prepared = await self.core.prepare(
            request.image,
            self._spec(request),
            want_thumbnail=request.want_thumbnail,
            want_model_image=request.want_model_image,
        )
        return _response(prepared)

    async def PreprocessBatch(
        self, request: preprocess_pb2.PreprocessBatchRequest, context: grpc.aio.ServicerContext
    ) -> preprocess_pb2.PreprocessBatchResponse:
        if not 1 <= len(request.items) <= MAX_BATCH_ITEMS:
            raise InvalidArgument(f"between 1 and {MAX_BATCH_ITEMS} items per call, got {len(request.items)}")
        response = preprocess_pb2.PreprocessBatchResponse()
        work, positions = [], []
        for i, item in enumerate(request.items):
            try:
                spec = self._spec(item)
            except InvalidArgument as exc:
                response.results.add(index=i, error=preprocess_pb2.PreprocessError(reason="invalid_request",
                                                                                     message=exc.message))
                continue
            response.results.add(index=i)
            work.append((item.image, spec, item.want_thumbnail, item.want_model_image))
            positions.append(i)
        outcomes = await self.core.prepare_many(work) if work else []
        for i, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, ImageInvalid):
                response.results[i].error.CopyFrom(
                    preprocess_pb2.PreprocessError(reason=outcome.reason, message=outcome.detail))
            else:
                response.results[i].result.CopyFrom(_response(outcome))
        return response
