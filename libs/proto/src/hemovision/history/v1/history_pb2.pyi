import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hemovision.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BlobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLOB_KIND_UNSPECIFIED: _ClassVar[BlobKind]
    BLOB_KIND_IMAGE: _ClassVar[BlobKind]
    BLOB_KIND_HEATMAP: _ClassVar[BlobKind]

class BatchStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATUS_UNSPECIFIED: _ClassVar[BatchStatus]
    BATCH_STATUS_QUEUED: _ClassVar[BatchStatus]
    BATCH_STATUS_RUNNING: _ClassVar[BatchStatus]
    BATCH_STATUS_COMPLETED: _ClassVar[BatchStatus]
    BATCH_STATUS_FAILED: _ClassVar[BatchStatus]

class BatchItemStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_ITEM_STATUS_UNSPECIFIED: _ClassVar[BatchItemStatus]
    BATCH_ITEM_STATUS_SUCCEEDED: _ClassVar[BatchItemStatus]
    BATCH_ITEM_STATUS_FAILED: _ClassVar[BatchItemStatus]
BLOB_KIND_UNSPECIFIED: BlobKind
BLOB_KIND_IMAGE: BlobKind
BLOB_KIND_HEATMAP: BlobKind
BATCH_STATUS_UNSPECIFIED: BatchStatus
BATCH_STATUS_QUEUED: BatchStatus
BATCH_STATUS_RUNNING: BatchStatus
BATCH_STATUS_COMPLETED: BatchStatus
BATCH_STATUS_FAILED: BatchStatus
BATCH_ITEM_STATUS_UNSPECIFIED: BatchItemStatus
BATCH_ITEM_STATUS_SUCCEEDED: BatchItemStatus
BATCH_ITEM_STATUS_FAILED: BatchItemStatus

class Prediction(_message.Message):
    __slots__ = ("id", "organization_id", "user_id", "label", "confidence", "probabilities", "needs_review", "review_reasons", "model", "timings_ms", "image_sha256", "filename", "sample_id", "slide_id", "note", "batch_id", "has_image", "has_heatmap", "reviewed_label", "reviewed_by", "reviewed_at", "review_comment", "created_at", "temperature", "ood_score")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    REVIEW_REASONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_IMAGE_FIELD_NUMBER: _ClassVar[int]
    HAS_HEATMAP_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_LABEL_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_BY_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_AT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_COMMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    user_id: str
    label: str
    confidence: float
    probabilities: _containers.ScalarMap[str, float]
    needs_review: bool
    review_reasons: _containers.RepeatedScalarFieldContainer[str]
    model: _common_pb2.ModelRef
    timings_ms: _containers.ScalarMap[str, float]
    image_sha256: str
    filename: str
    sample_id: str
    slide_id: str
    note: str
    batch_id: str
    has_image: bool
    has_heatmap: bool
    reviewed_label: str
    reviewed_by: str
    reviewed_at: _timestamp_pb2.Timestamp
    review_comment: str
    created_at: _timestamp_pb2.Timestamp
    temperature: float
    ood_score: float
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., user_id: _Optional[str] = ..., label: _Optional[str] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., needs_review: _Optional[bool] = ..., review_reasons: _Optional[_Iterable[str]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., image_sha256: _Optional[str] = ..., filename: _Optional[str] = ..., sample_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., note: _Optional[str] = ..., batch_id: _Optional[str] = ..., has_image: _Optional[bool] = ..., has_heatmap: _Optional[bool] = ..., reviewed_label: _Optional[str] = ..., reviewed_by: _Optional[str] = ..., reviewed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., review_comment: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., temperature: _Optional[float] = ..., ood_score: _Optional[float] = ...) -> None: ...

class RecordPredictionRequest(_message.Message):
    __slots__ = ("idempotency_key", "prediction", "image_png", "heatmap_png")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PNG_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_PNG_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    prediction: Prediction
    image_png: bytes
    heatmap_png: bytes
    def __init__(self, idempotency_key: _Optional[str] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., image_png: _Optional[bytes] = ..., heatmap_png: _Optional[bytes] = ...) -> None: ...

class RecordPredictionsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecordPredictionRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[RecordPredictionRequest, _Mapping]]] = ...) -> None: ...

class RecordPredictionsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecordPredictionResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RecordPredictionResult, _Mapping]]] = ...) -> None: ...

class RecordPredictionResult(_message.Message):
    __slots__ = ("prediction", "error")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    error: ItemError
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class GetPredictionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PredictionFilter(_message.Message):
    __slots__ = ("label", "created", "needs_review", "model_version", "sample_id", "reviewed", "batch_id")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    label: str
    created: _common_pb2.TimeRange
    needs_review: bool
    model_version: int
    sample_id: str
    reviewed: bool
    batch_id: str
    def __init__(self, label: _Optional[str] = ..., created: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., needs_review: _Optional[bool] = ..., model_version: _Optional[int] = ..., sample_id: _Optional[str] = ..., reviewed: _Optional[bool] = ..., batch_id: _Optional[str] = ...) -> None: ...

class ListPredictionsRequest(_message.Message):
    __slots__ = ("page", "filter", "review_queue_order")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    REVIEW_QUEUE_ORDER_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    filter: PredictionFilter
    review_queue_order: bool
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., filter: _Optional[_Union[PredictionFilter, _Mapping]] = ..., review_queue_order: _Optional[bool] = ...) -> None: ...

class ListPredictionsResponse(_message.Message):
    __slots__ = ("items", "next_cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Prediction]
    next_cursor: str
    def __init__(self, items: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class DeletePredictionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ReviewPredictionRequest(_message.Message):
    __slots__ = ("id", "label", "comment")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    label: str
    comment: str
    def __init__(self, id: _Optional[str] = ..., label: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class GetPredictionBlobRequest(_message.Message):
    __slots__ = ("prediction_id", "kind")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    kind: BlobKind
    def __init__(self, prediction_id: _Optional[str] = ..., kind: _Optional[_Union[BlobKind, str]] = ...) -> None: ...

class Blob(_message.Message):
    __slots__ = ("content_type", "data")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    data: bytes
    def __init__(self, content_type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("id", "organization_id", "user_id", "status", "total", "succeeded", "failed", "sample_id", "slide_id", "note", "created_at", "completed_at", "label_counts", "needs_review")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    user_id: str
    status: BatchStatus
    total: int
    succeeded: int
    failed: int
    sample_id: str
    slide_id: str
    note: str
    created_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    label_counts: _containers.ScalarMap[str, int]
    needs_review: int
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., user_id: _Optional[str] = ..., status: _Optional[_Union[BatchStatus, str]] = ..., total: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., sample_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., note: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_counts: _Optional[_Mapping[str, int]] = ..., needs_review: _Optional[int] = ...) -> None: ...

class CreateBatchRequest(_message.Message):
    __slots__ = ("idempotency_key", "total", "sample_id", "slide_id", "note")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    total: int
    sample_id: str
    slide_id: str
    note: str
    def __init__(self, idempotency_key: _Optional[str] = ..., total: _Optional[int] = ..., sample_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListBatchesRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListBatchesResponse(_message.Message):
    __slots__ = ("items", "next_cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Batch]
    next_cursor: str
    def __init__(self, items: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("batch_id", "index", "filename", "status", "prediction_id", "error", "prediction")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    index: int
    filename: str
    status: BatchItemStatus
    prediction_id: str
    error: str
    prediction: Prediction
    def __init__(self, batch_id: _Optional[str] = ..., index: _Optional[int] = ..., filename: _Optional[str] = ..., status: _Optional[_Union[BatchItemStatus, str]] = ..., prediction_id: _Optional[str] = ..., error: _Optional[str] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class RecordBatchItemRequest(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: BatchItem
    def __init__(self, item: _Optional[_Union[BatchItem, _Mapping]] = ...) -> None: ...

class ListBatchItemsRequest(_message.Message):
    __slots__ = ("batch_id", "page")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    page: _common_pb2.PageRequest
    def __init__(self, batch_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListBatchItemsResponse(_message.Message):
    __slots__ = ("items", "next_cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    next_cursor: str
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetStatisticsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: PredictionFilter
    def __init__(self, filter: _Optional[_Union[PredictionFilter, _Mapping]] = ...) -> None: ...

class DailyCount(_message.Message):
    __slots__ = ("day", "count", "needs_review")
    DAY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    day: str
    count: int
    needs_review: int
    def __init__(self, day: _Optional[str] = ..., count: _Optional[int] = ..., needs_review: _Optional[int] = ...) -> None: ...

class ModelCount(_message.Message):
    __slots__ = ("model", "count", "mean_confidence")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    count: int
    mean_confidence: float
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., count: _Optional[int] = ..., mean_confidence: _Optional[float] = ...) -> None: ...

class ClassAgreement(_message.Message):
    __slots__ = ("label", "reviewed", "agreed")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    label: str
    reviewed: int
    agreed: int
    def __init__(self, label: _Optional[str] = ..., reviewed: _Optional[int] = ..., agreed: _Optional[int] = ...) -> None: ...

class Statistics(_message.Message):
    __slots__ = ("total", "label_counts", "mean_confidence", "review_rate", "daily", "by_model", "agreement", "reviewed")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_RATE_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    BY_MODEL_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_FIELD_NUMBER: _ClassVar[int]
    total: int
    label_counts: _containers.ScalarMap[str, int]
    mean_confidence: float
    review_rate: float
    daily: _containers.RepeatedCompositeFieldContainer[DailyCount]
    by_model: _containers.RepeatedCompositeFieldContainer[ModelCount]
    agreement: _containers.RepeatedCompositeFieldContainer[ClassAgreement]
    reviewed: int
    def __init__(self, total: _Optional[int] = ..., label_counts: _Optional[_Mapping[str, int]] = ..., mean_confidence: _Optional[float] = ..., review_rate: _Optional[float] = ..., daily: _Optional[_Iterable[_Union[DailyCount, _Mapping]]] = ..., by_model: _Optional[_Iterable[_Union[ModelCount, _Mapping]]] = ..., agreement: _Optional[_Iterable[_Union[ClassAgreement, _Mapping]]] = ..., reviewed: _Optional[int] = ...) -> None: ...

class RecordAuditEventRequest(_message.Message):
    __slots__ = ("action", "target_type", "target_id", "details_json")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    action: str
    target_type: str
    target_id: str
    details_json: str
    def __init__(self, action: _Optional[str] = ..., target_type: _Optional[str] = ..., target_id: _Optional[str] = ..., details_json: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "organization_id", "user_id", "action", "target_type", "target_id", "details_json", "created_at", "client_ip", "source")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    user_id: str
    action: str
    target_type: str
    target_id: str
    details_json: str
    created_at: _timestamp_pb2.Timestamp
    client_ip: str
    source: str
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., user_id: _Optional[str] = ..., action: _Optional[str] = ..., target_type: _Optional[str] = ..., target_id: _Optional[str] = ..., details_json: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., client_ip: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class AuditEventInput(_message.Message):
    __slots__ = ("id", "organization_id", "user_id", "action", "target_type", "target_id", "details_json", "occurred_at", "client_ip")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    user_id: str
    action: str
    target_type: str
    target_id: str
    details_json: str
    occurred_at: _timestamp_pb2.Timestamp
    client_ip: str
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., user_id: _Optional[str] = ..., action: _Optional[str] = ..., target_type: _Optional[str] = ..., target_id: _Optional[str] = ..., details_json: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., client_ip: _Optional[str] = ...) -> None: ...

class AppendAuditEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEventInput]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEventInput, _Mapping]]] = ...) -> None: ...

class AppendAuditEventsResponse(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("page", "action_prefix", "user_id", "created", "target_id")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_PREFIX_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    action_prefix: str
    user_id: str
    created: _common_pb2.TimeRange
    target_id: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., action_prefix: _Optional[str] = ..., user_id: _Optional[str] = ..., created: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., target_id: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("items", "next_cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_cursor: str
    def __init__(self, items: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class ExportReviewedDatasetRequest(_message.Message):
    __slots__ = ("created", "val_fraction")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    VAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    created: _common_pb2.TimeRange
    val_fraction: float
    def __init__(self, created: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., val_fraction: _Optional[float] = ...) -> None: ...

class DataChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class GetRetentionPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetentionPolicy(_message.Message):
    __slots__ = ("organization_id", "blob_days", "record_days", "default_blob_days", "effective_blob_days", "audit_retention_days", "updated_by", "updated_at")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    BLOB_DAYS_FIELD_NUMBER: _ClassVar[int]
    RECORD_DAYS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BLOB_DAYS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_BLOB_DAYS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    blob_days: int
    record_days: int
    default_blob_days: int
    effective_blob_days: int
    audit_retention_days: int
    updated_by: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, organization_id: _Optional[str] = ..., blob_days: _Optional[int] = ..., record_days: _Optional[int] = ..., default_blob_days: _Optional[int] = ..., effective_blob_days: _Optional[int] = ..., audit_retention_days: _Optional[int] = ..., updated_by: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetRetentionPolicyRequest(_message.Message):
    __slots__ = ("blob_days", "record_days")
    BLOB_DAYS_FIELD_NUMBER: _ClassVar[int]
    RECORD_DAYS_FIELD_NUMBER: _ClassVar[int]
    blob_days: int
    record_days: int
    def __init__(self, blob_days: _Optional[int] = ..., record_days: _Optional[int] = ...) -> None: ...

class GetDriftRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DriftHistogram(_message.Message):
    __slots__ = ("component", "bins", "live", "reference")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    component: str
    bins: _containers.RepeatedScalarFieldContainer[str]
    live: _containers.RepeatedScalarFieldContainer[float]
    reference: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, component: _Optional[str] = ..., bins: _Optional[_Iterable[str]] = ..., live: _Optional[_Iterable[float]] = ..., reference: _Optional[_Iterable[float]] = ...) -> None: ...

class DriftComponent(_message.Message):
    __slots__ = ("component", "score", "status")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    component: str
    score: float
    status: str
    def __init__(self, component: _Optional[str] = ..., score: _Optional[float] = ..., status: _Optional[str] = ...) -> None: ...

class OrganizationDrift(_message.Message):
    __slots__ = ("organization_id", "model_name", "model_version", "cells", "score", "status", "components", "histograms", "review_rate", "last_cell_at")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAMS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_RATE_FIELD_NUMBER: _ClassVar[int]
    LAST_CELL_AT_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    model_name: str
    model_version: int
    cells: int
    score: float
    status: str
    components: _containers.RepeatedCompositeFieldContainer[DriftComponent]
    histograms: _containers.RepeatedCompositeFieldContainer[DriftHistogram]
    review_rate: float
    last_cell_at: _timestamp_pb2.Timestamp
    def __init__(self, organization_id: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., cells: _Optional[int] = ..., score: _Optional[float] = ..., status: _Optional[str] = ..., components: _Optional[_Iterable[_Union[DriftComponent, _Mapping]]] = ..., histograms: _Optional[_Iterable[_Union[DriftHistogram, _Mapping]]] = ..., review_rate: _Optional[float] = ..., last_cell_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DriftReport(_message.Message):
    __slots__ = ("items", "window_start", "window_days", "max_cells", "min_cells", "watch_threshold", "drifting_threshold")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_CELLS_FIELD_NUMBER: _ClassVar[int]
    MIN_CELLS_FIELD_NUMBER: _ClassVar[int]
    WATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFTING_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[OrganizationDrift]
    window_start: _timestamp_pb2.Timestamp
    window_days: int
    max_cells: int
    min_cells: int
    watch_threshold: float
    drifting_threshold: float
    def __init__(self, items: _Optional[_Iterable[_Union[OrganizationDrift, _Mapping]]] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_days: _Optional[int] = ..., max_cells: _Optional[int] = ..., min_cells: _Optional[int] = ..., watch_threshold: _Optional[float] = ..., drifting_threshold: _Optional[float] = ...) -> None: ...
