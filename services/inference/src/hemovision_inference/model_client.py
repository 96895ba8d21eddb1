"""The one client of the TF Serving gRPC API (embedded model server or real tensorflow/serving).

One channel, created once and reused; every call carries a deadline and fails fast
(wait_for_ready=False) when the server is down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

import hemovision_grpc_server
import hemovision_tensor_proto as tensors
from hemovision_inference.errors import ModelServerUnavailable, SignatureMissing, VersionNotLoaded

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
State = get_model_status_pb2.ModelVersionStatus.State


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: int
    error_message: str

    @property
    def available(self) -> bool:
        return self.state == "AVAILABLE"


@dataclass
class Prediction:
    version: int
    outputs: dict[str, np.ndarray]
    model_ms: float


class ModelServerClient:
    def __init__(
        self,
        address: str,
        *,
        predict_timeout_s: float = 10.0,
        control_timeout_s: float = 3.0,
        base_path: str = "",
    ) -> None:
        self.address = address
        self.predict_timeout_s = predict_timeout_s
        self.control_timeout_s = control_timeout_s
        self.base_path = base_path
        self.channel = hemovision_grpc_server.create_channel(address)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def predict(
        self, name: str, version: int, signature: str, images: np.ndarray, outputs: list[str] | None = None
    ) -> Prediction:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=name, signature_name=signature), output_filter=outputs or []
        )
        request.model_spec.version.value = version
        request.inputs["image"].CopyFrom(tensors.to_tensor_proto(np.asarray(images, dtype=np.float32)))
        started = time.perf_counter()
        try:
            reply = await self.predictions.Predict(request, timeout=self.predict_timeout_s, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise VersionNotLoaded(f"model {name} version {version} is not loaded on the model server") from None
            details = (exc.details() or "").lower()
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "signature" in details and "not found" in details:
                raise SignatureMissing(f"model {name} version {version} has no {signature!r} signature") from None
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                raise ModelServerUnavailable(f"model server unavailable ({exc.code().name.lower()})") from None
            raise
        model_ms = (time.perf_counter() - started) * 1000
        outputs = {k: tensors.from_tensor_proto(v) for k, v in reply.outputs.items()}
        return Prediction(reply.model_spec.version.value or version, outputs, model_ms)

    async def status(self, name: str) -> list[VersionStatus]:
        """Every version the server knows; [] when it knows none. ModelServerUnavailable when down."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=name))
        try:
            reply = await self.models.GetModelStatus(request, timeout=self.control_timeout_s, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise ModelServerUnavailable(f"model server unavailable ({exc.code().name.lower()})") from None
        return [
            VersionStatus(s.version, State.Name(s.state), s.status.error_code, s.status.error_message)
            for s in reply.model_version_status
        ]

    async def pin(self, name: str, versions: set[int]) -> None:
        """HandleReloadConfigRequest: serve exactly `versions` (specific policy) of `name`."""
        config = model_server_config_pb2.ModelServerConfig()
        mc = config.model_config_list.config.add(name=name, model_platform="tensorflow")
        if self.base_path:
            mc.base_path = self.base_path
        mc.model_version_policy.specific.versions.extend(sorted(versions))
        request = model_management_pb2.ReloadConfigRequest(config=config)
        try:
            reply = await self.models.HandleReloadConfigRequest(
                request, timeout=max(self.control_timeout_s, 10.0), wait_for_ready=False
            )
        except grpc.aio.AioRpcError as exc:
            raise ModelServerUnavailable(f"model server reload failed ({exc.code().name.lower()}: {exc.details()})") from None
        if reply.status.error_code != 0:
            raise ModelServerUnavailable(f"model server refused the config: {reply.status.error_message}")
