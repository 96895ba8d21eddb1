"""Accounts: register, sign in/out, tokens, profile, e-mail verification, password reset,
invitations and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from hemovision.auth.v1 import auth_pb2
from hemovision_contracts import LAB_USER, ORGANIZATION_ROLES, role_to_proto

from hemovision_gateway.clients import bearer
from hemovision_gateway.errors import ApiError
from hemovision_gateway.schemas import (
    ApiKey, ApiKeyCreated, ApiKeyList, Invitation, StatusMessage, TokenPair, User,
)
from hemovision_gateway.security import AdminUser, Ctx, CurrentUser, rate_limit_anonymous, role_pattern

router = APIRouter(prefix="/api/v1", tags=["accounts"])
Anonymous = Annotated[None, Depends(rate_limit_anonymous)]


class RegisterBody(BaseModel):
    email: str = Field(min_length=3, max_length=320, examples=["ana@lab.example"])
    password: str = Field(min_length=1, max_length=256, examples=["correct horse battery"])
    organization: str = Field(min_length=1, max_length=200, examples=["Central Lab"])


class LoginBody(BaseModel):
    email: str = Field(min_length=1, max_length=320, examples=["ana@lab.example"])
    password: str = Field(min_length=1, max_length=256, examples=["correct horse battery"])


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=2000)


class LogoutBody(BaseModel):
    refresh_token: str = Field(default="", max_length=2000)


class TokenBody(BaseModel):
    token: str = Field(min_length=1, max_length=2000)


class EmailBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)


class ResetBody(BaseModel):
    token: str = Field(min_length=1, max_length=2000)
    new_password: str = Field(min_length=1, max_length=256)


class AcceptBody(BaseModel):
    token: str = Field(min_length=1, max_length=2000)
    password: str = Field(min_length=1, max_length=256)


class PasswordBody(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class InviteBody(BaseModel):
    email: str = Field(min_length=3, max_length=320, examples=["colleague@lab.example"])
    role: str = Field(default=LAB_USER, pattern=role_pattern(ORGANIZATION_ROLES))


class ApiKeyBody(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["LIS integration"])


USER_EXAMPLE = {"id": "1b9d...", "email": "ana@lab.example", "organization": "Central Lab", "role": "org_admin"}
TOKENS_EXAMPLE = {"access_token": "eyJhbGciOiJFZERTQSIs...", "refresh_token": "r1.Zm9v...",
                  "token_type": "bearer", "expires_in": 900}


@router.post("/auth/register", status_code=201, responses={201: {"content": {"application/json": {"example": USER_EXAMPLE}}}})
async def register(body: RegisterBody, ctx: Ctx, _: Anonymous) -> User:
    """Creates a new organization with you as its org_admin."""
    u = await ctx.clients.auth.Register(
        auth_pb2.RegisterRequest(email=body.email, password=body.password, organization_name=body.organization),
        timeout=ctx.settings.rpc_timeout_s,
    )
    return User.from_pb(u)


@router.post("/auth/login", responses={200: {"content": {"application/json": {"example": TOKENS_EXAMPLE}}}})
async def login(body: LoginBody, ctx: Ctx, _: Anonymous) -> TokenPair:
    pair = await ctx.clients.auth.Login(
        auth_pb2.LoginRequest(email=body.email, password=body.password), timeout=ctx.settings.rpc_timeout_s
    )
    return TokenPair.from_pb(pair)


@router.post("/auth/refresh", responses={200: {"content": {"application/json": {"example": TOKENS_EXAMPLE}}}})
async def refresh(body: RefreshBody, ctx: Ctx, _: Anonymous) -> TokenPair:
    pair = await ctx.clients.auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=body.refresh_token), timeout=ctx.settings.rpc_timeout_s
    )
    return TokenPair.from_pb(pair)


@router.post("/auth/logout", status_code=204)
async def logout(user: CurrentUser, ctx: Ctx, body: LogoutBody | None = None) -> Response:
    """Revokes this access token and (if given) the refresh token's family."""
    await ctx.clients.auth.Logout(
        auth_pb2.LogoutRequest(refresh_token=body.refresh_token if body else ""),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s,
    )
    return Response(status_code=204)


@router.get("/me", responses={200: {"content": {"application/json": {"example": USER_EXAMPLE}}}})
async def me(user: CurrentUser, ctx: Ctx) -> User:
    u = await ctx.clients.auth.GetMe(auth_pb2.GetMeRequest(), metadata=bearer(user.token),
                                     timeout=ctx.settings.rpc_timeout_s)
    return User.from_pb(u)


@router.post("/me/password", status_code=204)
async def change_password(body: PasswordBody, user: CurrentUser, ctx: Ctx) -> Response:
    await ctx.clients.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=body.current_password, new_password=body.new_password),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s,
    )
    return Response(status_code=204)


@router.post("/auth/verify-email/request", status_code=202)
async def request_verification(user: CurrentUser, ctx: Ctx) -> StatusMessage:
    """Sends (again) the verification e-mail to the signed-in user."""
    await ctx.clients.auth.RequestEmailVerification(
        auth_pb2.RequestEmailVerificationRequest(), metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s
    )
    return StatusMessage(status="sent")


@router.post("/auth/verify-email")
async def verify_email(body: TokenBody, ctx: Ctx, _: Anonymous) -> User:
    u = await ctx.clients.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=body.token),
                                           timeout=ctx.settings.rpc_timeout_s)
    return User.from_pb(u)


@router.post("/auth/password-reset/request", status_code=202)
async def request_password_reset(body: EmailBody, ctx: Ctx, _: Anonymous) -> StatusMessage:
    """Always 202: whether the address exists is not revealed."""
    await ctx.clients.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=body.email),
                                                timeout=ctx.settings.rpc_timeout_s)
    return StatusMessage(status="sent_if_registered")


@router.post("/auth/password-reset", status_code=204)
async def reset_password(body: ResetBody, ctx: Ctx, _: Anonymous) -> Response:
    await ctx.clients.auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(token=body.token, new_password=body.new_password),
        timeout=ctx.settings.rpc_timeout_s,
    )
    return Response(status_code=204)


@router.post("/invitations", status_code=201)
async def invite(body: InviteBody, user: AdminUser, ctx: Ctx) -> Invitation:
    """An org_admin invites a colleague into the organization by e-mail."""
    inv = await ctx.clients.auth.InviteUser(
        auth_pb2.InviteUserRequest(email=body.email, role=role_to_proto(body.role)),
        metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s,
    )
    return Invitation.from_pb(inv)


@router.post("/invitations/accept", status_code=201)
async def accept_invitation(body: AcceptBody, ctx: Ctx, _: Anonymous) -> User:
    u = await ctx.clients.auth.AcceptInvitation(
        auth_pb2.AcceptInvitationRequest(token=body.token, password=body.password), timeout=ctx.settings.rpc_timeout_s
    )
    return User.from_pb(u)


@router.post("/api-keys", status_code=201, responses={201: {"content": {"application/json": {"example": {
    "id": "6f1c...", "name": "LIS integration", "prefix": "hv_3kf9", "secret": "hv_3kf9...shown-once",
    "created_at": "2026-11-22T14:00:00Z"}}}}})
async def create_api_key(body: ApiKeyBody, user: CurrentUser, ctx: Ctx) -> ApiKeyCreated:
    """The secret is in this answer only; use it as `Authorization: Bearer hv_...`."""
    if user.acting_service:
        raise ApiError(403, "permission_denied", "API keys cannot be created with a delegated token")
    key = await ctx.clients.auth.CreateApiKey(auth_pb2.CreateApiKeyRequest(name=body.name),
                                              metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return ApiKeyCreated.from_pb(key)


@router.get("/api-keys")
async def list_api_keys(user: CurrentUser, ctx: Ctx) -> ApiKeyList:
    reply = await ctx.clients.auth.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=bearer(user.token),
                                               timeout=ctx.settings.rpc_timeout_s)
    return ApiKeyList(items=[ApiKey.from_pb(k) for k in reply.keys])


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: str, user: CurrentUser, ctx: Ctx) -> Response:
    await ctx.clients.auth.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key_id), metadata=bearer(user.token),
                                        timeout=ctx.settings.rpc_timeout_s)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
