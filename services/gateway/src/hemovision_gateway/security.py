"""Authentication (local JWT verification, API-key exchange), roles and rate limiting,
as FastAPI dependencies used through `Annotated`."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated

import grpc
from fastapi import Depends, Request
from redis.exceptions import RedisError

from hemovision.auth.v1 import auth_pb2
from hemovision_contracts import ADAPTATION_ROLES, PLATFORM_ROLES, USER_ADMIN_ROLES, has_role, needs_role_message
from hemovision_tokens import Principal, TokenError

from hemovision_gateway.context import GatewayContext, get_context
from hemovision_gateway.errors import ApiError, api_error_from_grpc

API_KEY_PREFIX = "hv_"

Ctx = Annotated[GatewayContext, Depends(get_context)]


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise _unauthenticated("missing Authorization header (Bearer token or API key)")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("Authorization must be 'Bearer <token>'")
    return token.strip()


async def exchange_api_key(ctx: GatewayContext, api_key: str) -> str:
    """An access token for an API key, cached in Redis until shortly before it expires."""
    cache_key = "hv:gw:apikey:" + hashlib.sha256(api_key.encode()).hexdigest()
    try:
        cached = await ctx.redis.get(cache_key)
    except RedisError:
        cached = None
    if cached:
        return cached.decode() if isinstance(cached, bytes) else cached
    try:
        reply = await ctx.clients.auth.ExchangeApiKey(
            auth_pb2.ExchangeApiKeyRequest(api_key=api_key), timeout=ctx.settings.rpc_timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND,
                          grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT):
            raise _unauthenticated(exc.details() or "invalid or revoked API key") from None
        raise api_error_from_grpc(exc) from None
    # Cached briefly, so a revoked key stops working within a minute.
    ttl = min(int(reply.expires_in or 300) - 30, 60)
    if ttl > 0:
        try:
            await ctx.redis.set(cache_key, reply.access_token, ex=ttl)
        except RedisError:
            pass
    return reply.access_token


async def rate_limit(ctx: GatewayContext, who: str, limit: int) -> None:
    """Fixed window counter in Redis; 429 with Retry-After when exceeded."""
    window = max(1, ctx.settings.rate_limit_window_s)
    now = int(time.time())
    slot = now // window
    key = f"hv:gw:rl:{who}:{slot}"
    try:
        pipe = ctx.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count, _ = await pipe.execute()
    except RedisError:
        return  # the limiter fails open; revocation (which fails closed) still guards tokens
    if int(count) > limit:
        retry = window - (now % window) or 1
        raise ApiError(429, "rate_limited", f"too many requests; retry in {retry} s",
                       headers={"Retry-After": str(retry)})


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def rate_limit_anonymous(request: Request, ctx: Ctx) -> None:
    await rate_limit(ctx, f"ip:{client_ip(request)}", ctx.settings.rate_limit_auth_requests)


async def current_user(request: Request, ctx: Ctx) -> Principal:
    token = bearer_token(request)
    if token.startswith(API_KEY_PREFIX):
        token = await exchange_api_key(ctx, token)
    try:
        principal = await ctx.verifier.verify(token)
    except TokenError as exc:
        raise _unauthenticated(exc.message) from None
    await rate_limit(ctx, f"user:{principal.user_id}", ctx.settings.rate_limit_requests)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(*roles: str):
    """A dependency that answers 403 unless the caller has one of `roles` (an early, clear refusal;
    the service called checks again)."""

    async def check(user: CurrentUser) -> Principal:
        if not has_role(user.role, roles):
            raise ApiError(403, "permission_denied", needs_role_message(roles))
        return user

    return Annotated[Principal, Depends(check)]


def role_pattern(roles: tuple[str, ...]) -> str:
    """The pattern of a request field that takes one of these role names."""
    return "^(" + "|".join(roles) + ")$"


async def verified_user(user: CurrentUser) -> Principal:
    if not getattr(user, "email_verified", True):
        raise ApiError(403, "email_not_verified", "verify your e-mail address before uploading")
    return user


VerifiedUser = Annotated[Principal, Depends(verified_user)]
AdminUser = require_role(*USER_ADMIN_ROLES)
ModelAdmin = require_role(*PLATFORM_ROLES)
AdaptAdmin = require_role(*ADAPTATION_ROLES)
