"""Domain objects of the history service (no gRPC, no SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class StoragePolicy:
    """What history keeps (HV_HISTORY_STORE_IMAGES, HV_HISTORY_RETENTION_DAYS,
    HV_HISTORY_AUDIT_RETENTION_DAYS); an organization's RetentionPolicy overrides retention_days."""

    store_images: bool = True
    retention_days: int = 0  # stored images and heatmaps older than this are purged; 0 keeps them
    audit_retention_days: int = 400  # audit events older than this are purged; 0 keeps them


@dataclass(frozen=True)
class Caller:
    """The verified caller a request acts for (from the token, never from the body)."""

    user_id: str
    organization_id: str
    role: str
    client_ip: str = ""  # the gateway's view of the client (request-origin metadata), "" unknown
    acting_service: str | None = None  # the token's `act` claim: a service acting on its own behalf


@dataclass
class NewPrediction:
    """What RecordPrediction stores (validated by the service)."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    needs_review: bool
    review_reasons: list[str]
    model_name: str
    model_version: int
    temperature: float
    ood_score: float
    timings_ms: dict[str, float]
    image_sha256: str
    filename: str
    sample_id: str
    slide_id: str
    note: str
    batch_id: str | None


@dataclass
class Prediction(NewPrediction):
    """A stored prediction: what was recorded plus identity, blob keys and review (built by keyword)."""

    id: str
    organization_id: str
    user_id: str
    image_key: str | None
    heatmap_key: str | None
    reviewed_label: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_comment: str | None
    created_at: datetime


@dataclass
class PredictionFilter:
    label: str = ""
    created_start: datetime | None = None
    created_end: datetime | None = None
    needs_review: bool | None = None
    model_version: int = 0
    sample_id: str = ""
    reviewed: bool | None = None
    batch_id: str = ""


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str = ""


@dataclass
class Batch:
    id: str
    organization_id: str
    user_id: str
    status: str  # queued | running | completed | failed
    total: int
    sample_id: str
    slide_id: str
    note: str
    created_at: datetime
    completed_at: datetime | None
    succeeded: int = 0
    failed: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    needs_review: int = 0


@dataclass
class BatchItem:
    batch_id: str
    index: int
    filename: str
    status: str  # succeeded | failed
    prediction_id: str | None
    error: str
    prediction: Prediction | None = None


@dataclass
class AuditEvent:
    id: str
    organization_id: str
    user_id: str
    action: str
    target_type: str
    target_id: str
    details: dict
    created_at: datetime
    client_ip: str = ""
    source: str = "history"


@dataclass
class NewAuditEvent:
    """One event a service appends for someone else (AppendAuditEvents), validated by the service."""

    id: str
    organization_id: str
    user_id: str
    action: str
    target_type: str
    target_id: str
    details_json: str  # as sent; the service parses it into `details`
    occurred_at: datetime | None
    client_ip: str
    details: dict = field(default_factory=dict)


@dataclass
class AuditFilter:
    action_prefix: str = ""
    user_id: str = ""
    target_id: str = ""
    created_start: datetime | None = None
    created_end: datetime | None = None


@dataclass
class RetentionPolicy:
    """An organization's retention; `*_days` None = the platform default (blobs) / keep (records)."""

    organization_id: str
    blob_days: int | None
    record_days: int | None
    default_blob_days: int  # the platform's HV_HISTORY_RETENTION_DAYS (0 = keep forever)
    audit_retention_days: int = 0  # the platform's HV_HISTORY_AUDIT_RETENTION_DAYS (0 = keep forever)
    updated_by: str = ""
    updated_at: datetime | None = None

    @property
    def effective_blob_days(self) -> int:
        return self.default_blob_days if self.blob_days is None else self.blob_days


@dataclass
class OrganizationPurge:
    blobs: int = 0  # predictions whose stored image/heatmap were deleted
    records: int = 0  # prediction records deleted
    batches: int = 0  # batch records deleted


@dataclass
class PurgeReport:
    organizations: dict[str, OrganizationPurge] = field(default_factory=dict)
    audit_events: int = 0

    def as_dict(self) -> dict:
        return {
            "purged_blobs": sum(o.blobs for o in self.organizations.values()),
            "purged_records": sum(o.records for o in self.organizations.values()),
            "purged_batches": sum(o.batches for o in self.organizations.values()),
            "purged_audit_events": self.audit_events,
            "organizations": len(self.organizations),
        }


@dataclass
class DailyCount:
    day: str
    count: int
    needs_review: int


@dataclass
class ModelCount:
    model_name: str
    model_version: int
    count: int
    mean_confidence: float


@dataclass
class ClassAgreement:
    label: str
    reviewed: int
    agreed: int


@dataclass
class Statistics:
    total: int
    label_counts: dict[str, int]
    mean_confidence: float
    review_rate: float
    reviewed: int
    daily: list[DailyCount]
    by_model: list[ModelCount]
    agreement: list[ClassAgreement]
