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
    user_id: str
    action: str = Field(examples=["prediction.review"])
    target_type: str
    target_id: str
    details_json: str = Field(description="the event's details, a JSON document as text")
    created_at: str | None

    @classmethod
    def from_pb(cls, e) -> AuditEvent:
        return cls(id=e.id, user_id=e.user_id, action=e.action, target_type=e.target_type, target_id=e.target_id,
                   details_json=e.details_json, created_at=timestamp(e.created_at))


class AuditPage(ResponseModel):
    items: list[AuditEvent]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
