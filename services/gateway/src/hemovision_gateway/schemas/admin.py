"""Administration: organizations and the audit log (users: schemas.accounts)."""

from __future__ import annotations

from pydantic import Field

from hemovision_gateway.schemas.common import ResponseModel, timestamp


class Organization(ResponseModel):
    id: str
    name: str = Field(examples=["Central Lab"])
    user_count: int
    created_at: str | None

    @classmethod
    def from_pb(cls, o) -> Organization:
        return cls(id=o.id, name=o.name, user_count=o.user_count, created_at=timestamp(o.created_at))


class OrganizationPage(ResponseModel):
    items: list[Organization]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class AuditEvent(ResponseModel):
    id: str
    organization_id: str = Field(description='the organization the event belongs to; "" for platform events')
    user_id: str = Field(description='the acting user; "" for the system (e.g. the retention job)')
    action: str = Field(examples=["prediction.review"])
    target_type: str
    target_id: str
    details_json: str = Field(description="the event's details, a JSON document as text")
    created_at: str | None
    client_ip: str = Field(examples=["203.0.113.7"], description='the client IP the gateway saw; "" when unknown')
    source: str = Field(examples=["history"], description='the service that wrote it: "history", "auth", '
                                                          '"training", "retention"')

    @classmethod
    def from_pb(cls, e) -> AuditEvent:
        return cls(id=e.id, organization_id=e.organization_id, user_id=e.user_id, action=e.action,
                   target_type=e.target_type, target_id=e.target_id, details_json=e.details_json,
                   created_at=timestamp(e.created_at), client_ip=e.client_ip, source=e.source)

    def csv_row(self) -> list[str]:
        return [getattr(self, name) or "" for name in AUDIT_EXPORT_COLUMNS]


AUDIT_EXPORT_COLUMNS = ["id", "created_at", "organization_id", "user_id", "action", "target_type", "target_id",
                        "client_ip", "source", "details_json"]


class AuditPage(ResponseModel):
    items: list[AuditEvent]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class AuditExport(ResponseModel):
    """GET /api/v1/admin/audit/export?format=json: every matching event, newest first (streamed)."""

    items: list[AuditEvent]


class RetentionPolicy(ResponseModel):
    """An organization's retention (GET/PUT /api/v1/admin/retention); the purge runs daily."""

    organization_id: str
    blob_days: int | None = Field(examples=[90], description="days stored images/heatmaps are kept (0 = forever); "
                                                            "null = the platform default")
    record_days: int | None = Field(examples=[None], description="days whole prediction records are kept; "
                                                                "null = forever")
    default_blob_days: int = Field(description="the platform default for images/heatmaps (0 = forever)")
    effective_blob_days: int = Field(description="what applies now: blob_days, else the default (0 = forever)")
    audit_retention_days: int = Field(examples=[400], description="the audit log's retention, platform-wide "
                                                                 "(0 = forever)")
    updated_by: str | None = Field(description="who set the policy last; null when never set")
    updated_at: str | None

    @classmethod
    def from_pb(cls, p) -> RetentionPolicy:
        return cls(organization_id=p.organization_id,
                   blob_days=p.blob_days if p.HasField("blob_days") else None,
                   record_days=p.record_days if p.HasField("record_days") else None,
                   default_blob_days=p.default_blob_days, effective_blob_days=p.effective_blob_days,
                   audit_retention_days=p.audit_retention_days, updated_by=p.updated_by or None,
                   updated_at=timestamp(p.updated_at))
