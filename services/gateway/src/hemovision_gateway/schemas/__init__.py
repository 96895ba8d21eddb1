"""The REST API's response models: every JSON answer is one of these, built from the services'
protobuf messages by its `from_pb` (the one place a message becomes JSON) and documented in the
OpenAPI schema field by field (docs/api.md, docs/decisions.md)."""

from hemovision_gateway.schemas.accounts import (
    ApiKey, ApiKeyCreated, ApiKeyList, Invitation, Session, SessionList, SessionsEnded, TokenPair, User, UserPage,
)
from hemovision_gateway.schemas.adaptations import (
    ADAPTATION_STATUS, Adaptation, AdaptationLinks, AdaptationList, AdaptationStatus, OrganizationModel,
)
from hemovision_gateway.schemas.admin import AuditEvent, AuditPage, Organization, OrganizationPage
from hemovision_gateway.schemas.batches import (
    BATCH_STATUS, ITEM_STATUS, Batch, BatchAccepted, BatchDetail, BatchItem, BatchLinks, BatchPage,
)
from hemovision_gateway.schemas.common import ModelRef, ResponseModel, StatusMessage, role_name, timestamp
from hemovision_gateway.schemas.health import Alive, NotReady, Ready
from hemovision_gateway.schemas.models import (
    JOB_STATUS, VERSION_STATUS, ModelVersion, ModelVersionList, TrainingConfig, TrainingJob, TrainingJobList,
)
from hemovision_gateway.schemas.predictions import (
    Agreement, DailyCount, ModelCount, Prediction, PredictionLinks, PredictionPage, Review, Statistics,
)

__all__ = [
    "ADAPTATION_STATUS", "BATCH_STATUS", "ITEM_STATUS", "JOB_STATUS", "VERSION_STATUS",
    "Adaptation", "AdaptationLinks", "AdaptationList", "AdaptationStatus", "Agreement", "Alive", "ApiKey",
    "ApiKeyCreated", "ApiKeyList", "AuditEvent", "AuditPage", "Batch", "BatchAccepted", "BatchDetail", "BatchItem",
    "BatchLinks", "BatchPage", "DailyCount", "Invitation", "ModelCount", "ModelRef", "ModelVersion",
    "ModelVersionList", "NotReady", "Organization", "OrganizationModel", "OrganizationPage", "Prediction",
    "PredictionLinks", "PredictionPage", "Ready", "ResponseModel", "Review", "Session", "SessionList", "SessionsEnded",
    "Statistics", "StatusMessage", "TokenPair", "TrainingConfig", "TrainingJob", "TrainingJobList", "User", "UserPage",
    "role_name", "timestamp",
]
