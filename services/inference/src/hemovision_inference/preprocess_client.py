"""The inference service's client of the preprocess service (the short route, docs/serving.md):
inference sends the caller's image bytes with the spec of the version that will classify them,
and gets model-ready tensors back, so the tensor never travels through the gateway."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np

import hemovision_grpc_server
from hemovision.common.v1 import common_pb2
from hemovision.preprocess.v1 import preprocess_pb2, preprocess_pb2_grpc
from hemovision_contracts.tensors import TensorError, from_common_tensor
from hemovision_grpc_server import ServiceError, Unavailable
from hemovision_tokens import bearer_metadata


class PreprocessUnavailable(Unavailable):
    """The preprocess service cannot be reached (or did not answer within the deadline)."""


class PreprocessRefused(ServiceError):
    """The preprocess service refused the whole call (e.g. an expired token): same status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Prepared:
    """One accepted image: its model-ready tensor [S, S, 3] and what the pixel pipeline saw."""

    tensor: np.ndarray
    model_image_png: bytes
    sha256: str
    review_reasons: tuple[str, ...]
    decode_ms: float
    pixels_ms: float


class PreprocessClient:
    def __init__(self, address: str, *, timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.channel = hemovision_grpc_server.create_channel(address)
        self.stub = preprocess_pb2_grpc.PreprocessServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def prepare(
        self, images: list[bytes], spec: common_pb2.PreprocessSpec, *, want_model_image: bool,
        token: str | None, deadline_s: float | None,
    ) -> list[Prepared | preprocess_pb2.PreprocessError]:
        """One PreprocessBatch call; each image answered on its own (a rejected one gets its
        PreprocessError in its place). The caller's token goes along: preprocess checks it too."""
        timeout = self.timeout_s if deadline_s is None else max(0.05, min(self.timeout_s, deadline_s))
        request = preprocess_pb2.PreprocessBatchRequest(
            items=[preprocess_pb2.PreprocessRequest(image=data, spec=spec, want_model_image=want_model_image)
                   for data in images])
        metadata = bearer_metadata(token) if token else None
        try:
            answer = await self.stub.PreprocessBatch(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise PreprocessUnavailable(f"the preprocess service is unavailable ({exc.code().name})") from None
            raise PreprocessRefused(exc.code(), exc.details() or exc.code().name) from None
        if len(answer.results) != len(images):
            raise PreprocessUnavailable(f"the preprocess service returned {len(answer.results)} results for {len(images)}")
        return [_prepared(item) for item in answer.results]


def _prepared(item: preprocess_pb2.PreprocessStreamResponse) -> Prepared | preprocess_pb2.PreprocessError:
    if item.WhichOneof("outcome") != "result":
        return item.error
    result = item.result
    try:
        tensor = from_common_tensor(result.tensor)
    except TensorError as exc:
        raise PreprocessUnavailable(f"the preprocess service returned an unusable tensor: {exc}") from None
    return Prepared(
        tensor=tensor[0] if tensor.ndim == 4 else tensor,
        model_image_png=result.model_image_png,
        sha256=result.sha256,
        review_reasons=tuple(result.review_reasons),
        decode_ms=result.decode_ms,
        pixels_ms=result.pixels_ms,
    )
