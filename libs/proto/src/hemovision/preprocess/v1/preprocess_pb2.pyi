from hemovision.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PreprocessBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PreprocessRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[PreprocessRequest, _Mapping]]] = ...) -> None: ...

class PreprocessBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PreprocessStreamResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[PreprocessStreamResponse, _Mapping]]] = ...) -> None: ...

class PreprocessRequest(_message.Message):
    __slots__ = ("image", "spec", "want_thumbnail", "want_model_image")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    WANT_THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    WANT_MODEL_IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    spec: _common_pb2.PreprocessSpec
    want_thumbnail: bool
    want_model_image: bool
    def __init__(self, image: _Optional[bytes] = ..., spec: _Optional[_Union[_common_pb2.PreprocessSpec, _Mapping]] = ..., want_thumbnail: _Optional[bool] = ..., want_model_image: _Optional[bool] = ...) -> None: ...

class PreprocessResponse(_message.Message):
    __slots__ = ("tensor", "original_width", "original_height", "sha256", "format", "thumbnail_jpeg", "model_image_png", "decode_ms", "pixels_ms", "review_reasons", "cell_found", "cell_zoom")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_JPEG_FIELD_NUMBER: _ClassVar[int]
    MODEL_IMAGE_PNG_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PIXELS_MS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_REASONS_FIELD_NUMBER: _ClassVar[int]
    CELL_FOUND_FIELD_NUMBER: _ClassVar[int]
    CELL_ZOOM_FIELD_NUMBER: _ClassVar[int]
    tensor: _common_pb2.Tensor
    original_width: int
    original_height: int
    sha256: str
    format: str
    thumbnail_jpeg: bytes
    model_image_png: bytes
    decode_ms: float
    pixels_ms: float
    review_reasons: _containers.RepeatedScalarFieldContainer[str]
    cell_found: bool
    cell_zoom: float
    def __init__(self, tensor: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., original_width: _Optional[int] = ..., original_height: _Optional[int] = ..., sha256: _Optional[str] = ..., format: _Optional[str] = ..., thumbnail_jpeg: _Optional[bytes] = ..., model_image_png: _Optional[bytes] = ..., decode_ms: _Optional[float] = ..., pixels_ms: _Optional[float] = ..., review_reasons: _Optional[_Iterable[str]] = ..., cell_found: _Optional[bool] = ..., cell_zoom: _Optional[float] = ...) -> None: ...

class PreprocessError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PreprocessStreamResponse(_message.Message):
    __slots__ = ("index", "result", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    result: PreprocessResponse
    error: PreprocessError
    def __init__(self, index: _Optional[int] = ..., result: _Optional[_Union[PreprocessResponse, _Mapping]] = ..., error: _Optional[_Union[PreprocessError, _Mapping]] = ...) -> None: ...
