"""ModelInfo (with the full PreprocessSpec) per version, built once: a published version's
hemovision.json never changes, so the spec is pinned by version and every request reuses it."""

from __future__ import annotations

from google.protobuf import json_format

from hemovision.common.v1 import common_pb2
from hemovision.inference.v1 import inference_pb2
from hemovision_inference.router import ModelMetadata


class ModelInfos:
    """ModelInfo per version, for one server (its router caches the metadata the same way)."""

    MAX_VERSIONS = 64

    def __init__(self) -> None:
        self._infos: dict[tuple[str, int], inference_pb2.ModelInfo] = {}

    def get(self, meta: ModelMetadata) -> inference_pb2.ModelInfo:
        """The cached message; callers copy it into their answers (CopyFrom), never mutate it."""
        key = (meta.name, meta.version)
        info = self._infos.get(key)
        if info is None:
            if len(self._infos) >= self.MAX_VERSIONS:
                self._infos.pop(next(iter(self._infos)))
            info = self._infos[key] = model_info(meta)
        return info


def model_info(meta: ModelMetadata) -> inference_pb2.ModelInfo:
    """hemovision.json's fields as a ModelInfo (the spec messages mirror its objects)."""
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
