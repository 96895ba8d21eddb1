"""TokenInterceptor: every non-public RPC needs `authorization: Bearer <jwt>`; the verified
caller is available to the servicer through current_principal()."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

import grpc
from grpc.aio import ServerInterceptor

from hemovision_contracts import has_role, needs_role_message
from hemovision_grpc_server import PermissionDenied, ServiceError, Unauthenticated
from hemovision_grpc_server.interceptors import rewrap_handler
from hemovision_tokens import revocation_proof
from hemovision_tokens.principal import Principal, TokenError
from hemovision_tokens.verifier import TokenVerifier

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("hemovision_principal", default=None)

# Prefixes of methods that never need a token.
ALWAYS_PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def current_principal() -> Principal:
    """The verified caller of the RPC being served; Unauthenticated if there is none."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("authentication required")
    return principal


def optional_principal() -> Principal | None:
    """The verified caller, or None in a public RPC called without a token."""
    return _principal.get()


def check_role(principal: Principal, roles: Collection[str]) -> Principal:
    """`principal` if its role is one of `roles`; PermissionDenied otherwise."""
    if not has_role(principal.role, roles):
        raise PermissionDenied(needs_role_message(roles))
    return principal


def require_role(*roles: str) -> Principal:
    """The caller of the RPC being served if its role is one of `roles`; PermissionDenied otherwise."""
    return check_role(current_principal(), roles)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata for an outgoing call acting for `token`'s user, with this process's proof
    that it checked the token's revocation, if it did a moment ago (revocation_proof.py)."""
    proof = revocation_proof.PROOFS.make(token)
    if proof is None:
        return (("authorization", f"Bearer {token}"),)
    return (("authorization", f"Bearer {token}"), (revocation_proof.HEADER, proof))


def set_principal(principal: Principal | None) -> contextvars.Token:
    """Sets the caller for the current context (tests, background tasks). Reset with reset_principal."""
    return _principal.set(principal)


def reset_principal(token: contextvars.Token) -> None:
    _principal.reset(token)


def _credentials(context: grpc.aio.ServicerContext) -> tuple[str | None, str | None]:
    """(bearer token or None if absent, "" if malformed; the revocation proof or None)."""
    token = proof = None
    for key, value in context.invocation_metadata() or ():
        key = key.lower()
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if key == "authorization" and token is None:
            scheme, _, credential = value.strip().partition(" ")
            token = credential.strip() if scheme.lower() == "bearer" and credential.strip() else ""
        elif key == revocation_proof.HEADER:
            proof = value
    return token, proof


class TokenInterceptor(ServerInterceptor):
    """Verifies the bearer token of every non-public method (unary and streaming).

    `public_methods` are full method names, e.g. "/hemovision.auth.v1.AuthService/Login".
    A public method still gets the principal when a valid token is sent (an invalid one
    is ignored there). Health and reflection are always public.
    """

    def __init__(self, verifier: TokenVerifier, public_methods: Iterable[str] = ()) -> None:
        self._verifier = verifier
        self._public = frozenset(public_methods)

    async def _authenticate(self, context: grpc.aio.ServicerContext, public: bool) -> Principal | None:
        token, proof = _credentials(context)
        if token is None:
            if public:
                return None
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing authorization: Bearer <token> metadata")
        if not token:
            if public:
                return None
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization metadata must be 'Bearer <token>'")
            return None  # unreachable: abort raises
        try:
            return await self._verifier.verify(token, revocation_proof=proof)
        except TokenError as exc:
            if public:
                return None
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        except ServiceError as exc:  # e.g. Unavailable: revocation store or auth unreachable
            if public:
                return None
            await context.abort(exc.code, exc.message)
        return None  # unreachable: abort raises

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if method.startswith(ALWAYS_PUBLIC_PREFIXES):
            return handler
        public = method in self._public
        authenticate = self._authenticate

        def wrap_unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                principal = await authenticate(context, public)
                token = _principal.set(principal)
                try:
                    return await fn(request_or_iterator, context)
                finally:
                    _principal.reset(token)

            return wrapped

        def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
            async def wrapped(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                principal = await authenticate(context, public)
                token = _principal.set(principal)
                try:
                    async for item in fn(request_or_iterator, context):
                        yield item
                finally:
                    try:
                        _principal.reset(token)
                    except ValueError:  # generator finalised in another context
                        pass

            return wrapped

        return rewrap_handler(handler, wrap_unary, wrap_stream)
