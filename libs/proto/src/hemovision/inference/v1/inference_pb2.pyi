from hemovision.common.v1 import common_pb2 as _common_pb2
from hemovision.preprocess.v1 import preprocess_pb2 as _preprocess_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_REASON_UNSPECIFIED: _ClassVar[ReviewReason]
    REVIEW_REASON_LOW_CONFIDENCE: _ClassVar[ReviewReason]
    REVIEW_REASON_OUT_OF_DISTRIBUTION: _ClassVar[ReviewReason]
REVIEW_REASON_UNSPECIFIED: ReviewReason
REVIEW_REASON_LOW_CONFIDENCE: ReviewReason
REVIEW_REASON_OUT_OF_DISTRIBUTION: ReviewReason

class AnalyzeImagesRequest(_message.Message):
    __slots__ = ("images", "model_name", "want_heatmap", "want_model_image")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    WANT_HEATMAP_FIELD_NUMBER: _ClassVar[int]
    WANT_MODEL_IMAGE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    model_name: str
    want_heatmap: bool
    want_model_image: bool
    def __init__(self, images: _Optional[_Iterable[bytes]] = ..., model_name: _Optional[str] = ..., want_heatmap: _Optional[bool] = ..., want_model_image: _Optional[bool] = ...) -> None: ...

class AnalyzedImage(_message.Message):
    __slots__ = ("classification", "heatmap_png", "model_image_png", "sha256", "needs_review", "review_reasons", "decode_ms", "pixels_ms")
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_PNG_FIELD_NUMBER: _ClassVar[int]
    MODEL_IMAGE_PNG_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    REVIEW_REASONS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PIXELS_MS_FIELD_NUMBER: _ClassVar[int]
    classification: Classification
    heatmap_png: bytes
    model_image_png: bytes
    sha256: str
    needs_review: bool
    review_reasons: _containers.RepeatedScalarFieldContainer[str]
    decode_ms: float
    pixels_ms: float
    def __init__(self, classification: _Optional[_Union[Classification, _Mapping]] = ..., heatmap_png: _Optional[bytes] = ..., model_image_png: _Optional[bytes] = ..., sha256: _Optional[str] = ..., needs_review: _Optional[bool] = ..., review_reasons: _Optional[_Iterable[str]] = ..., decode_ms: _Optional[float] = ..., pixels_ms: _Optional[float] = ...) -> None: ...

class ImageOutcome(_message.Message):
    __slots__ = ("result", "error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: AnalyzedImage
    error: _preprocess_pb2.PreprocessError
    def __init__(self, result: _Optional[_Union[AnalyzedImage, _Mapping]] = ..., error: _Optional[_Union[_preprocess_pb2.PreprocessError, _Mapping]] = ...) -> None: ...

class AnalyzeImagesResponse(_message.Message):
    __slots__ = ("results", "model", "model_ms", "preprocess_ms")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageOutcome]
    model: ModelInfo
    model_ms: float
    preprocess_ms: float
    def __init__(self, results: _Optional[_Iterable[_Union[ImageOutcome, _Mapping]]] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., model_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ...) -> None: ...

class GetActiveModelRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "class_names", "input_size", "preprocessing", "temperature", "review_threshold", "ood_threshold")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OOD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    class_names: _containers.RepeatedScalarFieldContainer[str]
    input_size: int
    preprocessing: _common_pb2.PreprocessSpec
    temperature: float
    review_threshold: float
    ood_threshold: float
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., class_names: _Optional[_Iterable[str]] = ..., input_size: _Optional[int] = ..., preprocessing: _Optional[_Union[_common_pb2.PreprocessSpec, _Mapping]] = ..., temperature: _Optional[float] = ..., review_threshold: _Optional[float] = ..., ood_threshold: _Optional[float] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    images: _common_pb2.Tensor
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., images: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("label", "confidence", "probabilities", "needs_review", "review_reasons", "ood_score", "heatmap")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    REVIEW_REASONS_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORE_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    label: str
    confidence: float
    probabilities: _containers.ScalarMap[str, float]
    needs_review: bool
    review_reasons: _containers.RepeatedScalarFieldContainer[ReviewReason]
    ood_score: float
    heatmap: _common_pb2.Tensor
    def __init__(self, label: _Optional[str] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., needs_review: _Optional[bool] = ..., review_reasons: _Optional[_Iterable[_Union[ReviewReason, str]]] = ..., ood_score: _Optional[float] = ..., heatmap: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("results", "model", "model_ms")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_MS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    model: _common_pb2.ModelRef
    model_ms: float
    def __init__(self, results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., model_ms: _Optional[float] = ...) -> None: ...
