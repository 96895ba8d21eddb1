"""TF Serving's PredictionService and ModelService over gRPC (official tensorflow_serving stubs)."""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from hemovision_model_server.manager import LookupFailed, ModelEntry, ModelManager, VersionPolicy
from hemovision_model_server.predict import PredictFailed, Predictor
from hemovision_tensor_proto import TensorError, from_tensor_proto, to_tensor_proto


def _spec_target(spec) -> tuple[str, int | None, str | None]:
    version = spec.version.value if spec.HasField("version") else None
    return spec.name, version, (spec.version_label or None)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext):
        name, version, label = _spec_target(request.model_spec)
        try:
            inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
        except TensorError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            result = await self.predictor.predict(
                name=name,
                version=version,
                label=label,
                signature=request.model_spec.signature_name,
                inputs=inputs,
                output_filter=list(request.output_filter),
            )
        except PredictFailed as exc:
            await context.abort(grpc.StatusCode[exc.code], exc.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = result.name
        response.model_spec.version.value = result.version
        response.model_spec.signature_name = result.signature
        for key, value in result.outputs.items():
            response.outputs[key].CopyFrom(to_tensor_proto(value))
        return response

    async def GetModelMetadata(self, request, context: grpc.aio.ServicerContext):
        if list(request.metadata_field) != ["signature_def"]:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "metadata_field must be exactly ['signature_def']"
            )
        name, version, label = _spec_target(request.model_spec)
        try:
            servable = self.predictor.manager.resolve(name, version, label)
        except LookupFailed as exc:
            await context.abort(grpc.StatusCode[exc.code], exc.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].CopyFrom(_signature_def_any(servable))
        return response


def _signature_def_any(servable) -> any_pb2.Any:
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
        sig_map.signature_def[key].CopyFrom(value)
    packed = any_pb2.Any()
    packed.Pack(sig_map)
    return packed


def status_response(manager: ModelManager, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for v, state, code, message in manager.statuses(name, version):
        row = response.model_version_status.add(version=v, state=state)
        row.status.error_code = code
        row.status.error_message = message
    return response


def entries_from_config(config: model_server_config_pb2.ModelServerConfig, model_base: Path) -> list[ModelEntry]:
    if config.HasField("custom_model_config"):
        raise ValueError("custom_model_config is not supported")
    entries = []
    for mc in config.model_config_list.config:
        if not mc.name:
            raise ValueError("every model config needs a name")
        if mc.model_platform and mc.model_platform != "tensorflow":
            raise ValueError(f"model_platform {mc.model_platform!r} is not supported (only 'tensorflow')")
        policy_kind = mc.model_version_policy.WhichOneof("policy_choice") or "latest"
        if policy_kind == "latest":
            policy = VersionPolicy("latest", num_versions=mc.model_version_policy.latest.num_versions or 1)
        elif policy_kind == "specific":
            versions = frozenset(mc.model_version_policy.specific.versions)
            if not versions:
                raise ValueError(f"model {mc.name}: specific version policy with no versions")
            policy = VersionPolicy("specific", versions=versions)
        else:
            policy = VersionPolicy("all")
        labels = dict(mc.version_labels)
        base = Path(mc.base_path) if mc.base_path else model_base / mc.name
        entries.append(ModelEntry(name=mc.name, base_path=base, policy=policy, labels=labels))
    return entries


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, model_base: Path) -> None:
        self.manager = manager
        self.model_base = model_base

    async def GetModelStatus(self, request, context: grpc.aio.ServicerContext):
        name, version, label = _spec_target(request.model_spec)
        try:
            if label:
                entry = self.manager.entry(name)
                if label not in entry.labels:
                    raise LookupFailed("INVALID_ARGUMENT", f"unrecognized version label {label!r}")
                version = entry.labels[label]
            return status_response(self.manager, name, version)
        except LookupFailed as exc:
            await context.abort(grpc.StatusCode[exc.code], exc.message)

    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest, context):
        response = model_management_pb2.ReloadConfigResponse()
        try:
            entries = entries_from_config(request.config, self.model_base)
        except ValueError as exc:
            response.status.error_code = 3  # INVALID_ARGUMENT
            response.status.error_message = str(exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self.manager.reload_config(entries)
        response.status.error_code = 0
        return response
