"""Authentication (local JWT verification, API-key exchange), roles and rate limiting,
as FastAPI dependencies used through `Annotated`; where a request really came from (the client
behind trusted proxies, TLS) and the security headers of every answer, as ASGI middleware; the
browser session's cookies and their CSRF check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit

import grpc
from fastapi import Depends, Request
from redis.exceptions import RedisError
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hemovision.auth.v1 import auth_pb2
from hemovision_contracts import ADAPTATION_ROLES, PLATFORM_ROLES, USER_ADMIN_ROLES, has_role, needs_role_message
from hemovision_tokens import Principal, TokenError

from hemovision_gateway.clients import origin, reset_request_origin, set_request_origin
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
            auth_pb2.ExchangeApiKeyRequest(api_key=api_key), metadata=origin(), timeout=ctx.settings.rpc_timeout_s
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
    """The real client (RequestOriginMiddleware: behind trusted proxies only), else the TCP peer."""
    ip = request.scope.get("state", {}).get("client_ip")
    if ip:
        return ip
    return request.client.host if request.client else "unknown"


def served_over_tls(request: Request) -> bool:
    """TLS terminated by the gateway itself, or (X-Forwarded-Proto: https) by a trusted proxy."""
    tls = request.scope.get("state", {}).get("tls")
    return bool(tls) if tls is not None else request.url.scheme == "https"


# ---------- the real client behind trusted proxies ----------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def _address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from one X-Forwarded-For entry ("1.2.3.4", "1.2.3.4:5678", "[2001:db8::1]:443",
    "2001:db8::1"); None for anything else ("unknown", obfuscated ids, garbage)."""
    text = hop.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def _trusted(addr, networks: tuple[Network, ...]) -> bool:
    return addr is not None and any(addr.version == n.version and addr in n for n in networks)


def resolve_client(peer: str, forwarded_for: Iterable[str], networks: tuple[Network, ...]) -> str:
    """The client of a request: the TCP peer, unless the peer is a trusted proxy; then
    X-Forwarded-For is walked from the right, skipping trusted hops, and the first untrusted hop
    is the client. Whatever an untrusted party wrote (left of it) is never read, so the answer
    cannot be spoofed by a client. An unparseable entry stops the walk at the last address a
    trusted proxy vouched for."""
    peer_addr = _address(peer) if peer else None
    if not networks or not _trusted(peer_addr, networks):
        return peer or "unknown"
    client = str(peer_addr)
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        addr = _address(hop)
        if addr is None:
            break
        client = str(addr)
        if not _trusted(addr, networks):
            break
    return client


def resolve_tls(peer: str, scheme: str, forwarded_proto: str | None, networks: tuple[Network, ...]) -> bool:
    """Served over TLS: the gateway terminated it, or a trusted proxy says so (the first value of
    its X-Forwarded-Proto, which the proxy must set, not append to)."""
    if scheme in ("https", "wss"):
        return True
    if forwarded_proto and networks and _trusted(_address(peer) if peer else None, networks):
        return forwarded_proto.split(",")[0].strip().lower() == "https"
    return False


class RequestOriginMiddleware:
    """Resolves the real client IP and TLS once per request (scope state `client_ip`, `tls`) and
    sets the request origin that `clients.bearer`/`clients.origin` forward on every gRPC call."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.networks = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        peer = scope["client"][0] if scope.get("client") else ""
        ip = resolve_client(peer, headers.getlist("x-forwarded-for"), self.networks)
        state = scope.setdefault("state", {})
        state["client_ip"] = ip
        state["tls"] = resolve_tls(peer, scope.get("scheme", "http"), headers.get("x-forwarded-proto"), self.networks)
        token = set_request_origin(ip if ip != "unknown" else "", headers.get("user-agent", ""))
        try:
            await self.app(scope, receive, send)
        finally:
            reset_request_origin(token)


# ---------- security headers ----------

# The browser UI's policy: no inline script or style, nothing from another origin; images also
# from data: and blob: URLs (the UI shows fetched cell images and heatmaps as blob: URLs).
APP_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# /docs (Swagger UI) and /redoc only: their scripts are files too (no inline script), but both
# inject <style> elements and Redoc runs its search in a blob: worker.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'")
DOCS_PATHS = ("/docs", "/redoc")
HSTS = "max-age=31536000"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class SecurityHeadersMiddleware:
    """Adds the security headers to every answer (a header a route set itself is kept); HSTS only
    when served over TLS (RequestOriginMiddleware decides)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in DOCS_PATHS else APP_CSP
        state = scope.get("state", {})
        tls = state.get("tls", scope.get("scheme") == "https")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = csp
                if tls and "strict-transport-security" not in headers:
                    headers["strict-transport-security"] = HSTS
            await send(message)

        await self.app(scope, receive, with_headers)


# ---------- the browser session: refresh token in an HttpOnly cookie ----------

SESSION_MODE_HEADER = "x-hv-session"  # "cookie": the refresh token travels as a cookie, not in JSON
CSRF_HEADER = "x-csrf-token"


def cookie_mode(request: Request) -> bool:
    """True for a browser session (`X-HV-Session: cookie`); any other value is refused, not ignored."""
    value = request.headers.get(SESSION_MODE_HEADER)
    if value is None:
        return False
    if value.strip().lower() != "cookie":
        raise ApiError(422, "validation_error", "X-HV-Session must be `cookie` (or left out)")
    return True


def session_cookie_name(tls: bool) -> str:
    """`__Host-` over TLS: the browser then insists on Secure, Path=/ and no Domain, so no other
    host (a sibling subdomain) can plant or shadow it."""
    return "__Host-hv_refresh" if tls else "hv_refresh"


def csrf_cookie_name(tls: bool) -> str:
    return "__Host-hv_csrf" if tls else "hv_csrf"


def csrf_token_for(refresh_token: str) -> str:
    """The CSRF token of a session: derived from its refresh token (one-way), so a planted CSRF
    cookie is worthless without the victim's refresh token, and the gateway keeps no state."""
    digest = hashlib.sha256(b"hv-csrf\0" + refresh_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def request_is_same_origin(request: Request, public_url: str) -> bool:
    """The browser's Origin header names this gateway (its Host as requested, or public_url)."""
    sent = request.headers.get("origin", "").strip().lower().rstrip("/")
    if not sent or sent == "null":
        return False
    own = {_origin_of(public_url)}
    host = request.headers.get("host", "")
    if host:
        own.add(f"{'https' if served_over_tls(request) else 'http'}://{host}".lower())
    return sent in own


def session_cookie(request: Request) -> str:
    return request.cookies.get(session_cookie_name(served_over_tls(request)), "")


def check_cookie_request(request: Request, ctx: GatewayContext, *, needs_csrf: bool) -> None:
    """A cookie-authenticated call (refresh, logout) must come from our own page: Origin names this
    gateway and (needs_csrf) X-CSRF-Token matches the session's CSRF token (constant-time)."""
    if not request_is_same_origin(request, ctx.settings.public_url):
        raise ApiError(403, "csrf_failed", "cookie sessions are accepted only from this site's own pages (Origin)")
    if needs_csrf:
        refresh = session_cookie(request)
        if not refresh:
            raise _unauthenticated("no session cookie; sign in again")
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), csrf_token_for(refresh).encode()):
            raise ApiError(403, "csrf_failed", "missing or wrong X-CSRF-Token for this session")


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
