"""Administration: users of the organization (org_admin) or of the platform (platform_admin),
organizations and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from hemovision.auth.v1 import auth_pb2
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from hemovision_contracts import ROLES, role_to_proto

from hemovision_gateway.clients import bearer
from hemovision_gateway.schemas import AuditEvent, AuditPage, Organization, OrganizationPage, User, UserPage
from hemovision_gateway.security import AdminUser, Ctx, role_pattern

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


@router.get("/audit")
async def audit_events(user: AdminUser, ctx: Ctx, limit: Limit = 50, cursor: Cursor = "",
                       action_prefix: Annotated[str, Query(max_length=100)] = "") -> AuditPage:
    reply = await ctx.clients.history.ListAuditEvents(
        history_pb2.ListAuditEventsRequest(page=common_pb2.PageRequest(limit=limit, cursor=cursor),
                                           action_prefix=action_prefix),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return AuditPage(items=[AuditEvent.from_pb(e) for e in reply.items], next_cursor=reply.next_cursor or None)
