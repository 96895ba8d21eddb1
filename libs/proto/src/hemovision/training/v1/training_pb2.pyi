import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]

class VersionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_STATUS_UNSPECIFIED: _ClassVar[VersionStatus]
    VERSION_STATUS_REGISTERED: _ClassVar[VersionStatus]
    VERSION_STATUS_ACTIVE: _ClassVar[VersionStatus]
    VERSION_STATUS_RETIRED: _ClassVar[VersionStatus]

class AdaptationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADAPTATION_STATUS_UNSPECIFIED: _ClassVar[AdaptationStatus]
    ADAPTATION_STATUS_QUEUED: _ClassVar[AdaptationStatus]
    ADAPTATION_STATUS_RUNNING: _ClassVar[AdaptationStatus]
    ADAPTATION_STATUS_SUCCEEDED: _ClassVar[AdaptationStatus]
    ADAPTATION_STATUS_REJECTED: _ClassVar[AdaptationStatus]
    ADAPTATION_STATUS_FAILED: _ClassVar[AdaptationStatus]
    ADAPTATION_STATUS_CANCELLED: _ClassVar[AdaptationStatus]

class RolloutMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_MODE_UNSPECIFIED: _ClassVar[RolloutMode]
    ROLLOUT_MODE_CANARY: _ClassVar[RolloutMode]
    ROLLOUT_MODE_SHADOW: _ClassVar[RolloutMode]

class RolloutStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STATUS_UNSPECIFIED: _ClassVar[RolloutStatus]
    ROLLOUT_STATUS_RUNNING: _ClassVar[RolloutStatus]
    ROLLOUT_STATUS_PROMOTED: _ClassVar[RolloutStatus]
    ROLLOUT_STATUS_ABORTED: _ClassVar[RolloutStatus]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
VERSION_STATUS_UNSPECIFIED: VersionStatus
VERSION_STATUS_REGISTERED: VersionStatus
VERSION_STATUS_ACTIVE: VersionStatus
VERSION_STATUS_RETIRED: VersionStatus
ADAPTATION_STATUS_UNSPECIFIED: AdaptationStatus
ADAPTATION_STATUS_QUEUED: AdaptationStatus
ADAPTATION_STATUS_RUNNING: AdaptationStatus
ADAPTATION_STATUS_SUCCEEDED: AdaptationStatus
ADAPTATION_STATUS_REJECTED: AdaptationStatus
ADAPTATION_STATUS_FAILED: AdaptationStatus
ADAPTATION_STATUS_CANCELLED: AdaptationStatus
ROLLOUT_MODE_UNSPECIFIED: RolloutMode
ROLLOUT_MODE_CANARY: RolloutMode
ROLLOUT_MODE_SHADOW: RolloutMode
ROLLOUT_STATUS_UNSPECIFIED: RolloutStatus
ROLLOUT_STATUS_RUNNING: RolloutStatus
ROLLOUT_STATUS_PROMOTED: RolloutStatus
ROLLOUT_STATUS_ABORTED: RolloutStatus

class TrainingConfig(_message.Message):
    __slots__ = ("data_dir", "model_name", "epochs", "batch_size", "input_size", "seed", "limit_per_class", "learning_rate", "auto_activate", "parent_version")
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    AUTO_ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    data_dir: str
    model_name: str
    epochs: int
    batch_size: int
    input_size: int
    seed: int
    limit_per_class: int
    learning_rate: float
    auto_activate: bool
    parent_version: int
    def __init__(self, data_dir: _Optional[str] = ..., model_name: _Optional[str] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., input_size: _Optional[int] = ..., seed: _Optional[int] = ..., limit_per_class: _Optional[int] = ..., learning_rate: _Optional[float] = ..., auto_activate: _Optional[bool] = ..., parent_version: _Optional[int] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("id", "status", "config", "epoch", "total_epochs", "metrics", "model_version", "error", "created_by", "created_at", "started_at", "finished_at", "phase")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: JobStatus
    config: TrainingConfig
    epoch: int
    total_epochs: int
    metrics: _containers.ScalarMap[str, float]
    model_version: int
    error: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    phase: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., config: _Optional[_Union[TrainingConfig, _Mapping]] = ..., epoch: _Optional[int] = ..., total_epochs: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., model_version: _Optional[int] = ..., error: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., phase: _Optional[str] = ...) -> None: ...

class StartTrainingJobRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: TrainingConfig
    def __init__(self, config: _Optional[_Union[TrainingConfig, _Mapping]] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListTrainingJobsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListTrainingJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TrainingJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[TrainingJob, _Mapping]]] = ...) -> None: ...

class WatchTrainingJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelTrainingJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "path", "status", "metrics", "training_config", "data_hash", "parent_version", "created_by", "created_at", "activated_at", "job_id", "was_active", "organization_id", "stale", "deprecated", "deprecation_reason", "deprecated_at")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    DATA_HASH_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WAS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    DEPRECATION_REASON_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    path: str
    status: VersionStatus
    metrics: _containers.ScalarMap[str, float]
    training_config: _struct_pb2.Struct
    data_hash: str
    parent_version: int
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    activated_at: _timestamp_pb2.Timestamp
    job_id: str
    was_active: bool
    organization_id: str
    stale: bool
    deprecated: bool
    deprecation_reason: str
    deprecated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., path: _Optional[str] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., training_config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., data_hash: _Optional[str] = ..., parent_version: _Optional[int] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., job_id: _Optional[str] = ..., was_active: _Optional[bool] = ..., organization_id: _Optional[str] = ..., stale: _Optional[bool] = ..., deprecated: _Optional[bool] = ..., deprecation_reason: _Optional[str] = ..., deprecated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class GetModelVersionRequest(_message.Message):
    __slots__ = ("model_name", "version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetActiveModelVersionRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class Adaptation(_message.Message):
    __slots__ = ("id", "organization_id", "status", "model_name", "base_version", "previous_version", "model_version", "cells", "holdout_cells", "epoch", "total_epochs", "phase", "holdout_accuracy_before", "holdout_accuracy_after", "pbc_val_accuracy_before", "pbc_val_accuracy_after", "gate_reasons", "error", "created_by", "created_at", "started_at", "finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_CELLS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ACCURACY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ACCURACY_AFTER_FIELD_NUMBER: _ClassVar[int]
    PBC_VAL_ACCURACY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PBC_VAL_ACCURACY_AFTER_FIELD_NUMBER: _ClassVar[int]
    GATE_REASONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    status: AdaptationStatus
    model_name: str
    base_version: int
    previous_version: int
    model_version: int
    cells: int
    holdout_cells: int
    epoch: int
    total_epochs: int
    phase: str
    holdout_accuracy_before: float
    holdout_accuracy_after: float
    pbc_val_accuracy_before: float
    pbc_val_accuracy_after: float
    gate_reasons: _containers.RepeatedScalarFieldContainer[str]
    error: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., status: _Optional[_Union[AdaptationStatus, str]] = ..., model_name: _Optional[str] = ..., base_version: _Optional[int] = ..., previous_version: _Optional[int] = ..., model_version: _Optional[int] = ..., cells: _Optional[int] = ..., holdout_cells: _Optional[int] = ..., epoch: _Optional[int] = ..., total_epochs: _Optional[int] = ..., phase: _Optional[str] = ..., holdout_accuracy_before: _Optional[float] = ..., holdout_accuracy_after: _Optional[float] = ..., pbc_val_accuracy_before: _Optional[float] = ..., pbc_val_accuracy_after: _Optional[float] = ..., gate_reasons: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartAdaptationRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class GetAdaptationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListAdaptationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListAdaptationsResponse(_message.Message):
    __slots__ = ("adaptations",)
    ADAPTATIONS_FIELD_NUMBER: _ClassVar[int]
    adaptations: _containers.RepeatedCompositeFieldContainer[Adaptation]
    def __init__(self, adaptations: _Optional[_Iterable[_Union[Adaptation, _Mapping]]] = ...) -> None: ...

class CancelAdaptationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class OrganizationModel(_message.Message):
    __slots__ = ("organization_id", "model_name", "version", "adapted", "platform_version", "stale")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ADAPTED_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_VERSION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    model_name: str
    version: int
    adapted: bool
    platform_version: int
    stale: bool
    def __init__(self, organization_id: _Optional[str] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., adapted: _Optional[bool] = ..., platform_version: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class GetOrganizationModelRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class RollbackOrganizationModelRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class DeprecateModelVersionRequest(_message.Message):
    __slots__ = ("model_name", "version", "reason", "restore")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    reason: str
    restore: bool
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ..., restore: _Optional[bool] = ...) -> None: ...

class ActivateModelVersionRequest(_message.Message):
    __slots__ = ("model_name", "version", "force", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    force: bool
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., force: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RolloutVersionStats(_message.Message):
    __slots__ = ("role", "version", "requests", "cells", "latency_p50_ms", "latency_p95_ms")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    role: str
    version: int
    requests: int
    cells: int
    latency_p50_ms: float
    latency_p95_ms: float
    def __init__(self, role: _Optional[str] = ..., version: _Optional[int] = ..., requests: _Optional[int] = ..., cells: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ...) -> None: ...

class RolloutStats(_message.Message):
    __slots__ = ("versions", "agree_cells", "compared_cells", "agreement_rate", "shadow_dropped", "shadow_skipped", "shadow_failed", "available")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    AGREE_CELLS_FIELD_NUMBER: _ClassVar[int]
    COMPARED_CELLS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FAILED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[RolloutVersionStats]
    agree_cells: int
    compared_cells: int
    agreement_rate: float
    shadow_dropped: int
    shadow_skipped: int
    shadow_failed: int
    available: bool
    def __init__(self, versions: _Optional[_Iterable[_Union[RolloutVersionStats, _Mapping]]] = ..., agree_cells: _Optional[int] = ..., compared_cells: _Optional[int] = ..., agreement_rate: _Optional[float] = ..., shadow_dropped: _Optional[int] = ..., shadow_skipped: _Optional[int] = ..., shadow_failed: _Optional[int] = ..., available: _Optional[bool] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("id", "model_name", "candidate_version", "baseline_version", "mode", "canary_percent", "status", "started_by", "started_at", "start_reason", "ended_by", "ended_at", "end_reason", "stats")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BASELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    START_REASON_FIELD_NUMBER: _ClassVar[int]
    ENDED_BY_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    id: str
    model_name: str
    candidate_version: int
    baseline_version: int
    mode: RolloutMode
    canary_percent: int
    status: RolloutStatus
    started_by: str
    started_at: _timestamp_pb2.Timestamp
    start_reason: str
    ended_by: str
    ended_at: _timestamp_pb2.Timestamp
    end_reason: str
    stats: RolloutStats
    def __init__(self, id: _Optional[str] = ..., model_name: _Optional[str] = ..., candidate_version: _Optional[int] = ..., baseline_version: _Optional[int] = ..., mode: _Optional[_Union[RolloutMode, str]] = ..., canary_percent: _Optional[int] = ..., status: _Optional[_Union[RolloutStatus, str]] = ..., started_by: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_reason: _Optional[str] = ..., ended_by: _Optional[str] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_reason: _Optional[str] = ..., stats: _Optional[_Union[RolloutStats, _Mapping]] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("model_name", "version", "mode", "canary_percent", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    mode: RolloutMode
    canary_percent: int
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., mode: _Optional[_Union[RolloutMode, str]] = ..., canary_percent: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("model_name", "with_stats")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    WITH_STATS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    with_stats: bool
    def __init__(self, model_name: _Optional[str] = ..., with_stats: _Optional[bool] = ...) -> None: ...

class PromoteRolloutRequest(_message.Message):
    __slots__ = ("model_name", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortRolloutRequest(_message.Message):
    __slots__ = ("model_name", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
