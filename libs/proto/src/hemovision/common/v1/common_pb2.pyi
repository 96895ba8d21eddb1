import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_LAB_USER: _ClassVar[Role]
    ROLE_ORG_ADMIN: _ClassVar[Role]
    ROLE_ML_ENGINEER: _ClassVar[Role]
    ROLE_PLATFORM_ADMIN: _ClassVar[Role]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
ROLE_UNSPECIFIED: Role
ROLE_LAB_USER: Role
ROLE_ORG_ADMIN: Role
ROLE_ML_ENGINEER: Role
ROLE_PLATFORM_ADMIN: Role
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_UINT8: DType

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class PreprocessSpec(_message.Message):
    __slots__ = ("version", "input_size", "crop", "stain_normalization", "clahe", "blur_sigma", "mean", "std", "locate", "white_balance", "stain_check")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    STAIN_NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    CLAHE_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LOCATE_FIELD_NUMBER: _ClassVar[int]
    WHITE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    STAIN_CHECK_FIELD_NUMBER: _ClassVar[int]
    version: int
    input_size: int
    crop: str
    stain_normalization: StainNormalization
    clahe: Clahe
    blur_sigma: float
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    locate: Locate
    white_balance: WhiteBalance
    stain_check: StainCheck
    def __init__(self, version: _Optional[int] = ..., input_size: _Optional[int] = ..., crop: _Optional[str] = ..., stain_normalization: _Optional[_Union[StainNormalization, _Mapping]] = ..., clahe: _Optional[_Union[Clahe, _Mapping]] = ..., blur_sigma: _Optional[float] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., locate: _Optional[_Union[Locate, _Mapping]] = ..., white_balance: _Optional[_Union[WhiteBalance, _Mapping]] = ..., stain_check: _Optional[_Union[StainCheck, _Mapping]] = ...) -> None: ...

class StainCheck(_message.Message):
    __slots__ = ("reference_od", "max_distance")
    REFERENCE_OD_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    reference_od: _containers.RepeatedScalarFieldContainer[float]
    max_distance: float
    def __init__(self, reference_od: _Optional[_Iterable[float]] = ..., max_distance: _Optional[float] = ...) -> None: ...

class Locate(_message.Message):
    __slots__ = ("work_size", "white_percentile", "min_od", "dilate", "min_area", "target_fraction", "min_zoom", "max_zoom")
    WORK_SIZE_FIELD_NUMBER: _ClassVar[int]
    WHITE_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    MIN_OD_FIELD_NUMBER: _ClassVar[int]
    DILATE_FIELD_NUMBER: _ClassVar[int]
    MIN_AREA_FIELD_NUMBER: _ClassVar[int]
    TARGET_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MIN_ZOOM_FIELD_NUMBER: _ClassVar[int]
    MAX_ZOOM_FIELD_NUMBER: _ClassVar[int]
    work_size: int
    white_percentile: float
    min_od: float
    dilate: int
    min_area: float
    target_fraction: float
    min_zoom: float
    max_zoom: float
    def __init__(self, work_size: _Optional[int] = ..., white_percentile: _Optional[float] = ..., min_od: _Optional[float] = ..., dilate: _Optional[int] = ..., min_area: _Optional[float] = ..., target_fraction: _Optional[float] = ..., min_zoom: _Optional[float] = ..., max_zoom: _Optional[float] = ...) -> None: ...

class WhiteBalance(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, target: _Optional[_Iterable[float]] = ...) -> None: ...

class StainNormalization(_message.Message):
    __slots__ = ("method", "target_mean", "target_std")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_MEAN_FIELD_NUMBER: _ClassVar[int]
    TARGET_STD_FIELD_NUMBER: _ClassVar[int]
    method: str
    target_mean: _containers.RepeatedScalarFieldContainer[float]
    target_std: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, method: _Optional[str] = ..., target_mean: _Optional[_Iterable[float]] = ..., target_std: _Optional[_Iterable[float]] = ...) -> None: ...

class Clahe(_message.Message):
    __slots__ = ("clip_limit", "tiles")
    CLIP_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    clip_limit: float
    tiles: int
    def __init__(self, clip_limit: _Optional[float] = ..., tiles: _Optional[int] = ...) -> None: ...

class PageRequest(_message.Message):
    __slots__ = ("limit", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("user_id", "organization_id", "role", "email")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    organization_id: str
    role: Role
    email: str
    def __init__(self, user_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., email: _Optional[str] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
