"""Accounts: register, sign in/out, tokens (a browser keeps its refresh token in an HttpOnly
cookie), sign-in sessions, profile, e-mail verification, password reset, invitations, API keys,
and the session side of user administration (sign a user out everywhere, lift a lockout)."""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, Field, StringConstraints

from hemovision.auth.v1 import auth_pb2
from hemovision_contracts import LAB_USER, ORGANIZATION_ROLES, role_to_proto

from hemovision_gateway.clients import bearer, origin
from hemovision_gateway.errors import ApiError, api_error_from_grpc, error_response
from hemovision_gateway.schemas import (
    ApiKey, ApiKeyCreated, ApiKeyList, Invitation, Session, SessionList, SessionsEnded, StatusMessage, TokenPair, User,
)
from hemovision_gateway.security import (
    AdminUser, Ctx, CurrentUser, check_cookie_request, cookie_mode, csrf_cookie_name, csrf_token_for,
    rate_limit_anonymous, role_pattern, served_over_tls, session_cookie, session_cookie_name,
)

router = APIRouter(prefix="/api/v1", tags=["accounts"])
# The session side of user administration, beside routes/admin.py's user routes (same prefix, tag).
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Anonymous = Annotated[None, Depends(rate_limit_anonymous)]


class RegisterBody(BaseModel):
    email: str = Field(min_length=3, max_length=320, examples=["ana@lab.example"])
    password: str = Field(min_length=1, max_length=256, examples=["correct horse battery"])
    organization: str = Field(min_length=1, max_length=200, examples=["Central Lab"])


class LoginBody(BaseModel):
    email: str = Field(min_length=1, max_length=320, examples=["ana@lab.example"])
    password: str = Field(min_length=1, max_length=256, examples=["correct horse battery"])


class RefreshBody(BaseModel):
    refresh_token: str = Field(default="", max_length=2000,
                               description="required, unless a browser session (`X-HV-Session: cookie`) sends it "
                                           "as its cookie")


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
    # whitespace around the name is dropped before the length check: "   " is no name
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = Field(
        examples=["LIS integration"])


USER_EXAMPLE = {"id": "1b9d...", "email": "ana@lab.example", "organization": "Central Lab", "role": "org_admin"}
TOKENS_EXAMPLE = {"access_token": "eyJhbGciOiJFZERTQSIs...", "refresh_token": "r1.Zm9v...",
                  "token_type": "bearer", "expires_in": 900}


@router.post("/auth/register", status_code=201, responses={201: {"content": {"application/json": {"example": USER_EXAMPLE}}}})
async def register(body: RegisterBody, ctx: Ctx, _: Anonymous) -> User:
    """Creates a new organization with you as its org_admin."""
    u = await ctx.clients.auth.Register(
        auth_pb2.RegisterRequest(email=body.email, password=body.password, organization_name=body.organization),
        metadata=origin(), timeout=ctx.settings.rpc_timeout_s,
    )
    return User.from_pb(u)


# ---------- the browser session's cookies ----------

SESSION_COOKIE_DOC = (
    "With the header `X-HV-Session: cookie` (the browser UI) the refresh token is set as an HttpOnly, "
    "SameSite=Strict cookie (`__Host-hv_refresh` over TLS, Secure) instead of being put in the JSON "
    "(`refresh_token` is null), with a readable CSRF cookie (`__Host-hv_csrf`); refresh and logout then "
    "take the cookie and need `X-CSRF-Token` (the CSRF cookie's value) and a same-site `Origin`. "
    "Without the header the refresh token is in the JSON, as for every API client."
)
NO_STORE = {"Cache-Control": "no-store"}
SESSION_HEADER_PARAM = {"in": "header", "name": "X-HV-Session", "required": False,
                        "schema": {"type": "string", "enum": ["cookie"]},
                        "description": "`cookie`: a browser session (refresh token in an HttpOnly cookie)"}


def _set_session_cookies(response: Response, request: Request, ctx, refresh_token: str) -> None:
    tls = served_over_tls(request)
    common = {"max_age": ctx.settings.session_cookie_max_age_s, "path": "/", "secure": tls, "samesite": "strict"}
    response.set_cookie(session_cookie_name(tls), refresh_token, httponly=True, **common)
    # Read by the page's own script and sent back as X-CSRF-Token (double submit).
    response.set_cookie(csrf_cookie_name(tls), csrf_token_for(refresh_token), httponly=False, **common)


def _clear_session_cookies(response: Response, request: Request) -> None:
    tls = served_over_tls(request)
    for name, httponly in ((session_cookie_name(tls), True), (csrf_cookie_name(tls), False)):
        response.delete_cookie(name, path="/", secure=tls, httponly=httponly, samesite="strict")


def _token_answer(pair, request: Request, response: Response, ctx) -> TokenPair:
    in_cookie = cookie_mode(request)
    response.headers.update(NO_STORE)
    if in_cookie:
        _set_session_cookies(response, request, ctx, pair.refresh_token)
    return TokenPair.from_pb(pair, refresh_in_cookie=in_cookie)


@router.post("/auth/login", description=SESSION_COOKIE_DOC, openapi_extra={"parameters": [SESSION_HEADER_PARAM]},
             responses={200: {"content": {"application/json": {"example": TOKENS_EXAMPLE}}}})
async def login(body: LoginBody, request: Request, response: Response, ctx: Ctx, _: Anonymous) -> TokenPair:
    """Signs in. After too many failed attempts the account is locked for a while: 429 with Retry-After."""
    if cookie_mode(request):
        check_cookie_request(request, ctx, needs_csrf=False)
    pair = await ctx.clients.auth.Login(
        auth_pb2.LoginRequest(email=body.email, password=body.password), metadata=origin(),
        timeout=ctx.settings.rpc_timeout_s,
    )
    return _token_answer(pair, request, response, ctx)


@router.post("/auth/refresh", description=SESSION_COOKIE_DOC, openapi_extra={"parameters": [SESSION_HEADER_PARAM]},
             responses={200: {"content": {"application/json": {"example": TOKENS_EXAMPLE}}}})
async def refresh(request: Request, response: Response, ctx: Ctx, _: Anonymous,
                  body: RefreshBody | None = None) -> TokenPair:
    if cookie_mode(request):
        check_cookie_request(request, ctx, needs_csrf=True)
        token = session_cookie(request)
    else:
        token = body.refresh_token if body else ""
        if not token:
            raise ApiError(422, "validation_error", "refresh_token: Field required")
    try:
        pair = await ctx.clients.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=token), metadata=origin(),
                                              timeout=ctx.settings.rpc_timeout_s)
    except grpc.aio.AioRpcError as exc:
        if not (cookie_mode(request) and exc.code() == grpc.StatusCode.UNAUTHENTICATED):
            raise
        err = api_error_from_grpc(exc)
        failed = error_response(err.status, err.code, err.message, err.headers)
        _clear_session_cookies(failed, request)  # spent or revoked: the browser drops it
        return failed  # type: ignore[return-value]
    return _token_answer(pair, request, response, ctx)


@router.post("/auth/logout", status_code=204, openapi_extra={"parameters": [SESSION_HEADER_PARAM]})
async def logout(request: Request, user: CurrentUser, ctx: Ctx, body: LogoutBody | None = None) -> Response:
    """Revokes this access token and the refresh token's family (the body's, or a browser
    session's cookie, which is then cleared)."""
    token = body.refresh_token if body else ""
    in_cookie = cookie_mode(request)
    if in_cookie:
        if session_cookie(request):
            check_cookie_request(request, ctx, needs_csrf=True)
            token = session_cookie(request)
    await ctx.clients.auth.Logout(
        auth_pb2.LogoutRequest(refresh_token=token), metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s,
    )
    response = Response(status_code=204)
    if in_cookie:
        _clear_session_cookies(response, request)
    return response


# ---------- sign-in sessions ----------

SessionId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
                                 description="the session's id (a UUID, from GET /auth/sessions)")]
UserId = Annotated[str, Path(min_length=1, max_length=100)]


@router.get("/auth/sessions")
async def list_sessions(user: CurrentUser, ctx: Ctx) -> SessionList:
    """Your sign-in sessions (one per sign-in; refreshing keeps the session), newest first."""
    reply = await ctx.clients.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=bearer(user.token),
                                                timeout=ctx.settings.rpc_timeout_s)
    return SessionList(items=[Session.from_pb(s) for s in reply.items])


@router.delete("/auth/sessions/{session_id}", status_code=204)
async def revoke_session(session_id: SessionId, user: CurrentUser, ctx: Ctx) -> Response:
    """Ends one of your sessions: its refresh token and the access tokens it issued stop working."""
    await ctx.clients.auth.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=session_id),
                                         metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/sign-out-everywhere")
async def sign_out_everywhere(request: Request, response: Response, user: CurrentUser, ctx: Ctx) -> SessionsEnded:
    """Ends every session of yours, this one included (a browser's session cookie is cleared)."""
    reply = await ctx.clients.auth.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(),
                                                     metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    _clear_session_cookies(response, request)
    return SessionsEnded(sessions_ended=reply.sessions_ended)


@admin_router.post("/users/{user_id}/sign-out-everywhere")
async def sign_user_out_everywhere(user_id: UserId, user: AdminUser, ctx: Ctx) -> SessionsEnded:
    """Ends every session of a user you manage (org_admin: your organization; platform_admin: any)."""
    reply = await ctx.clients.auth.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(user_id=user_id),
                                                     metadata=bearer(user.token), timeout=ctx.settings.rpc_timeout_s)
    return SessionsEnded(sessions_ended=reply.sessions_ended)


@admin_router.post("/users/{user_id}/unlock")
async def unlock_user(user_id: UserId, user: AdminUser, ctx: Ctx) -> User:
    """Lifts a sign-in lockout (after too many failed sign-ins) before it expires."""
    u = await ctx.clients.auth.UnlockUser(auth_pb2.UnlockUserRequest(user_id=user_id), metadata=bearer(user.token),
                                          timeout=ctx.settings.rpc_timeout_s)
    return User.from_pb(u)


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
    u = await ctx.clients.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=body.token), metadata=origin(),
                                           timeout=ctx.settings.rpc_timeout_s)
    return User.from_pb(u)


@router.post("/auth/password-reset/request", status_code=202)
async def request_password_reset(body: EmailBody, ctx: Ctx, _: Anonymous) -> StatusMessage:
    """Always 202: whether the address exists is not revealed."""
    await ctx.clients.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=body.email),
                                                metadata=origin(), timeout=ctx.settings.rpc_timeout_s)
    return StatusMessage(status="sent_if_registered")


@router.post("/auth/password-reset", status_code=204)
async def reset_password(body: ResetBody, ctx: Ctx, _: Anonymous) -> Response:
    await ctx.clients.auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(token=body.token, new_password=body.new_password),
        metadata=origin(), timeout=ctx.settings.rpc_timeout_s,
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
        auth_pb2.AcceptInvitationRequest(token=body.token, password=body.password), metadata=origin(),
        timeout=ctx.settings.rpc_timeout_s
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
