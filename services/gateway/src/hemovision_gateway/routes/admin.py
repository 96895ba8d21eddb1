"""Administration: users of the organization (org_admin) or of the platform (platform_admin),
organizations and the audit log (search and export)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from hemovision.auth.v1 import auth_pb2
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from hemovision_contracts import ROLES, role_to_proto

from hemovision_gateway.clients import bearer
from hemovision_gateway.query_params import IsoTime
from hemovision_gateway.schemas import AuditPage, Organization, OrganizationPage, User, UserPage
from hemovision_gateway.schemas.admin import AUDIT_EXPORT_COLUMNS, AuditEvent, AuditExport, RetentionPolicy
from hemovision_gateway.security import AdminUser, Ctx, role_pattern
from hemovision_gateway.spreadsheet import spreadsheet_safe

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str, Query(max_length=500)]


@router.get("/users")
async def list_users(user: AdminUser, ctx: Ctx, limit: Limit = 50, cursor: Cursor = "") -> UserPage:
    reply = await ctx.clients.auth.ListUsers(
        auth_pb2.ListUsersRequest(page=common_pb2.PageRequest(limit=limit, cursor=cursor)),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return UserPage(items=[User.from_pb(u) for u in reply.users], next_cursor=reply.next_cursor or None)


@router.get("/users/{user_id}")
async def get_user(user_id: str, user: AdminUser, ctx: Ctx) -> User:
    u = await ctx.clients.auth.GetUser(auth_pb2.GetUserRequest(user_id=user_id), metadata=bearer(user.token),
                                       timeout=ctx.settings.rpc_timeout_s)
    return User.from_pb(u)


class RoleBody(BaseModel):
    role: str = Field(pattern=role_pattern(ROLES), examples=["org_admin"])


@router.post("/users/{user_id}/role")
async def set_role(user_id: str, body: RoleBody, user: AdminUser, ctx: Ctx) -> User:
    """org_admin: lab_user <-> org_admin in its organization; platform_admin: any role."""
    u = await ctx.clients.auth.SetUserRole(
        auth_pb2.SetUserRoleRequest(user_id=user_id, role=role_to_proto(body.role)),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return User.from_pb(u)


class ActiveBody(BaseModel):
    active: bool = Field(examples=[False])


@router.post("/users/{user_id}/active")
async def set_active(user_id: str, body: ActiveBody, user: AdminUser, ctx: Ctx) -> User:
    """Deactivates (active=false) or reactivates a user; a deactivated user's tokens stop working."""
    u = await ctx.clients.auth.SetUserActive(auth_pb2.SetUserActiveRequest(user_id=user_id, active=body.active),
                                             metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return User.from_pb(u)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: str, user: AdminUser, ctx: Ctx) -> Response:
    await ctx.clients.auth.DeleteUser(auth_pb2.DeleteUserRequest(user_id=user_id), metadata=bearer(user.token),
                                      timeout=ctx.settings.rpc_timeout_s)
    return Response(status_code=204)


@router.get("/organizations")
async def list_organizations(user: AdminUser, ctx: Ctx, limit: Limit = 50, cursor: Cursor = "") -> OrganizationPage:
    reply = await ctx.clients.auth.ListOrganizations(
        auth_pb2.ListOrganizationsRequest(page=common_pb2.PageRequest(limit=limit, cursor=cursor)),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return OrganizationPage(items=[Organization.from_pb(o) for o in reply.organizations],
                            next_cursor=reply.next_cursor or None)


class AuditFilters:
    """The audit search's query parameters, shared by the page and the export."""

    def __init__(
        self,
        action_prefix: Annotated[str, Query(max_length=100, description='e.g. "model." or "auth.login"')] = "",
        user_id: Annotated[str, Query(max_length=64, description="the acting user")] = "",
        target_id: Annotated[str, Query(max_length=128, description="the object acted on")] = "",
        created_from: Annotated[datetime | None, IsoTime, Query(
            alias="from", description="inclusive start, ISO 8601 (no zone: UTC)")] = None,
        created_to: Annotated[datetime | None, IsoTime,
                              Query(alias="to", description="exclusive end, ISO 8601 (no zone: UTC)")] = None,
    ) -> None:
        created = common_pb2.TimeRange()
        for field, value in (("start", created_from), ("end", created_to)):
            if value is not None:
                getattr(created, field).FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
        self.params = {"action_prefix": action_prefix, "user_id": user_id, "target_id": target_id,
                       "from": created_from.isoformat() if created_from else None,
                       "to": created_to.isoformat() if created_to else None}
        self.request = history_pb2.ListAuditEventsRequest(action_prefix=action_prefix, user_id=user_id,
                                                          target_id=target_id, created=created)

    def page(self, limit: int, cursor: str = "") -> history_pb2.ListAuditEventsRequest:
        request = history_pb2.ListAuditEventsRequest()
        request.CopyFrom(self.request)
        request.page.CopyFrom(common_pb2.PageRequest(limit=limit, cursor=cursor))
        return request


@router.get("/audit")
async def audit_events(user: AdminUser, ctx: Ctx, filters: Annotated[AuditFilters, Depends()], limit: Limit = 50,
                       cursor: Cursor = "") -> AuditPage:
    """The audit log, newest first: org_admin its organization's events, platform_admin every
    organization's; filtered by action prefix, acting user, target and time."""
    reply = await ctx.clients.history.ListAuditEvents(filters.page(limit, cursor), metadata=bearer(user.token),
                                                      timeout=ctx.settings.rpc_timeout_s)
    return AuditPage(items=[AuditEvent.from_pb(e) for e in reply.items], next_cursor=reply.next_cursor or None)


EXPORT_PAGE = 200


@router.get("/audit/export", response_class=StreamingResponse,
            responses={200: {"model": AuditExport, "content": {"text/csv": {}},
                             "description": "CSV (header row, then one event per row) or JSON (`{\"items\": [...]}`)"}})
async def export_audit_events(
    user: AdminUser, ctx: Ctx, filters: Annotated[AuditFilters, Depends()],
    format: Annotated[Literal["csv", "json"], Query(description='csv, or json: {"items": [events]}')] = "csv",  # noqa: A002
) -> StreamingResponse:
    """Every event matching the filters (the same scoping as the search), streamed page by page.
    The export itself is recorded in the audit log (`audit.export`) before the first byte."""
    metadata = bearer(user.token)
    # The first page before answering: a refusal is a proper JSON error, not a broken download.
    first = await ctx.clients.history.ListAuditEvents(filters.page(EXPORT_PAGE), metadata=metadata,
                                                      timeout=ctx.settings.rpc_timeout_s)
    await ctx.clients.history.RecordAuditEvent(
        history_pb2.RecordAuditEventRequest(
            action="audit.export", target_type="audit_log", target_id=user.organization_id,
            details_json=json.dumps({"format": format, "filters": filters.params}, sort_keys=True)),
        metadata=metadata, timeout=ctx.settings.rpc_timeout_s)

    async def pages() -> AsyncIterator[list[AuditEvent]]:
        reply = first
        while True:
            yield [AuditEvent.from_pb(e) for e in reply.items]
            if not reply.next_cursor:
                return
            reply = await ctx.clients.history.ListAuditEvents(filters.page(EXPORT_PAGE, reply.next_cursor),
                                                              metadata=metadata, timeout=ctx.settings.rpc_timeout_s)

    async def csv_rows() -> AsyncIterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(AUDIT_EXPORT_COLUMNS)
        async for events in pages():
            for e in events:
                writer.writerow([spreadsheet_safe(v) for v in e.csv_row()])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()

    async def json_document() -> AsyncIterator[str]:
        yield '{"items":['
        sep = ""
        async for events in pages():
            for e in events:
                yield sep + e.model_dump_json()
                sep = ","
        yield "]}"

    if format == "csv":
        body, media_type = csv_rows(), "text/csv; charset=utf-8"
    else:
        body, media_type = json_document(), "application/json"
    return StreamingResponse(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="hemovision-audit.{format}"', "Cache-Control": "no-store"})


class RetentionBody(BaseModel):
    """Replaces both values; null = the platform default (blobs) / keep forever (records)."""

    blob_days: int | None = Field(default=None, ge=0, le=36_500, examples=[90],
                                  description="days stored images/heatmaps are kept; 0 = forever")
    record_days: int | None = Field(default=None, ge=1, le=36_500, examples=[None],
                                    description="days whole prediction records are kept")


@router.get("/retention")
async def get_retention(user: AdminUser, ctx: Ctx) -> RetentionPolicy:
    """Your organization's retention (org_admin): stored images/heatmaps and whole records."""
    p = await ctx.clients.history.GetRetentionPolicy(history_pb2.GetRetentionPolicyRequest(),
                                                     metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return RetentionPolicy.from_pb(p)


@router.put("/retention")
async def set_retention(body: RetentionBody, user: AdminUser, ctx: Ctx) -> RetentionPolicy:
    """Sets your organization's retention (org_admin; audited as `retention.update`); the daily
    purge applies it."""
    p = await ctx.clients.history.SetRetentionPolicy(
        history_pb2.SetRetentionPolicyRequest(blob_days=body.blob_days, record_days=body.record_days),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return RetentionPolicy.from_pb(p)
