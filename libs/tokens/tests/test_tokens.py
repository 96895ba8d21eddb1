"""hemovision_tokens against real Redis and real in-process gRPC servers."""

from __future__ import annotations

import time

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision_grpc_server import GrpcServiceSettings, PermissionDenied, Unauthenticated, create_server
from hemovision_testkit.tokens import TokenFactory
from hemovision_tokens import (
    AuthKeyProvider,
    TokenError,
    TokenInterceptor,
    bearer_metadata,
    current_principal,
    require_role,
    revoke_jti,
    revoke_user_tokens,
)


@pytest.fixture
def factory() -> TokenFactory:
    return TokenFactory()


async def test_valid_token_gives_principal(factory):
    token = factory.issue(user_id="u1", organization_id="o1", role="org_admin", email="a@lab.org")
    p = await factory.verifier().verify(token)
    assert (p.user_id, p.organization_id, p.role, p.email) == ("u1", "o1", "org_admin", "a@lab.org")
    assert p.acting_service is None and p.token == token and p.email_verified
    assert p.expires_at > time.time() + 800


async def test_obo_and_unverified_claims(factory):
    p = await factory.verifier().verify(factory.issue(act="batch-worker", email_verified=False))
    assert p.acting_service == "batch-worker"
    assert p.email_verified is False


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda f: f.issue(ttl=-60), "token expired"),
        (lambda f: TokenFactory(kid=f.kid).issue(), "invalid token signature"),
        (lambda f: TokenFactory().issue(), "token signed with an unknown key"),
        (lambda f: TokenFactory(kid=f.kid, audience="other").issue(), None),
        (lambda f: "not-a-jwt", "malformed token"),
        (lambda f: "", "missing token"),
    ],
)
async def test_bad_tokens_are_rejected(factory, make, message):
    token = make(factory)
    with pytest.raises(TokenError) as info:
        await factory.verifier().verify(token)
    if message:
        assert info.value.message == message


async def test_wrong_audience_and_issuer(factory):
    other = TokenFactory(kid=factory.kid, audience="elsewhere")
    other.private_key = factory.private_key
    with pytest.raises(TokenError, match="audience"):
        await factory.verifier().verify(other.issue())
    other = TokenFactory(kid=factory.kid, issuer="someone")
    other.private_key = factory.private_key
    with pytest.raises(TokenError, match="issuer"):
        await factory.verifier().verify(other.issue())


async def test_leeway_accepts_just_expired(factory):
    token = factory.issue(ttl=-3)
    assert (await factory.verifier().verify(token)).role == "lab_user"


async def test_verified_tokens_skip_the_signature_check_but_not_expiry_or_key_removal(factory, monkeypatch):
    import types

    import hemovision_tokens.verifier as verifier_module

    verifier = factory.verifier()
    token = factory.issue(ttl=60)
    decodes = []
    real_decode = verifier_module.jwt.decode
    monkeypatch.setattr(verifier_module.jwt, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    for _ in range(3):
        assert (await verifier.verify(token)).role == "lab_user"
    assert len(decodes) == 1
    # a tampered copy of a cached token is a different string: checked in full, rejected
    head, body, sig = token.split(".")
    with pytest.raises(TokenError):
        await verifier.verify(f"{head}.{body}.{sig[:-4]}AAAA")
    # expiry is checked on every hit
    now = time.time()
    monkeypatch.setattr(verifier_module, "time", types.SimpleNamespace(time=lambda: now + 60 + verifier.leeway + 1))
    with pytest.raises(TokenError, match="token expired"):
        await verifier.verify(token)
    monkeypatch.setattr(verifier_module, "time", time)
    # a key the provider no longer knows (rotated out) invalidates its cached tokens
    other = factory.issue(ttl=60)
    await verifier.verify(other)
    verifier.key_provider._keys.clear()
    with pytest.raises(TokenError, match="unknown key"):
        await verifier.verify(other)


async def test_revoked_jti(factory, redis_url):
    verifier = factory.verifier(redis_url=redis_url)
    token = factory.issue()
    principal = await verifier.verify(token)
    r = aioredis.Redis.from_url(redis_url)
    await revoke_jti(r, principal.jti, ttl=principal.expires_at - time.time())
    assert 800 < await r.ttl(f"hv:revoked:jti:{principal.jti}") <= 901
    with pytest.raises(TokenError, match="token revoked"):
        await verifier.verify(token)
    await verifier.verify(factory.issue())  # other tokens unaffected
    await r.aclose()
    await verifier.close()


async def test_revoked_user_rejects_older_tokens_only(factory, redis_url):
    verifier = factory.verifier(redis_url=redis_url)
    old = factory.issue(user_id="u1")
    r = aioredis.Redis.from_url(redis_url)
    await revoke_user_tokens(r, "u1")
    new = factory.issue(user_id="u1")
    with pytest.raises(TokenError, match="token revoked"):
        await verifier.verify(old)
    assert (await verifier.verify(new)).user_id == "u1"
    await r.aclose()
    await verifier.close()


async def test_redis_down_fails_closed(factory):
    from hemovision_grpc_server import Unavailable

    verifier = factory.verifier(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(Unavailable):
        await verifier.verify(factory.issue())
    await verifier.close()


# ---- the interceptor on a real server -------------------------------------------------

SERVICE = "test.v1.SecretService"
PUBLIC = {f"/{SERVICE}/Public"}


def _register(server: grpc.aio.Server) -> None:
    async def whoami(request: bytes, context) -> bytes:
        p = current_principal()
        return f"{p.user_id}|{p.organization_id}|{p.role}".encode()

    async def admin_only(request: bytes, context) -> bytes:
        return require_role("platform_admin").user_id.encode()

    async def public(request: bytes, context) -> bytes:
        try:
            return current_principal().user_id.encode()
        except Unauthenticated:
            return b"anonymous"

    async def stream(request: bytes, context):
        for i in range(3):
            yield f"{current_principal().user_id}:{i}".encode()

    async def client_stream(request_iterator, context) -> bytes:
        n = 0
        async for _ in request_iterator:
            n += 1
        return f"{current_principal().user_id}:{n}".encode()

    handlers = {
        "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami),
        "AdminOnly": grpc.unary_unary_rpc_method_handler(admin_only),
        "Public": grpc.unary_unary_rpc_method_handler(public),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
async def secured(factory, redis_url):
    verifier = factory.verifier(redis_url=redis_url)
    running = await create_server(
        GrpcServiceSettings(port=0),
        service_names=[SERVICE],
        register=_register,
        interceptors=[TokenInterceptor(verifier, PUBLIC)],
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield channel
    await channel.close()
    await running.stop(0)
    await verifier.close()


async def _code(awaitable) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value.code(), info.value.details()


async def test_interceptor_unary(secured, factory):
    call = secured.unary_unary(f"/{SERVICE}/WhoAmI")
    token = factory.issue(user_id="u7", organization_id="o7", role="org_admin")
    assert await call(b"", metadata=bearer_metadata(token), timeout=5) == b"u7|o7|org_admin"
    code, details = await _code(call(b"", timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in details
    code, details = await _code(call(b"", metadata=(("authorization", "Basic abc"),), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, details = await _code(call(b"", metadata=bearer_metadata(factory.issue(ttl=-100)), timeout=5))
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "token expired")


async def test_interceptor_roles(secured, factory):
    call = secured.unary_unary(f"/{SERVICE}/AdminOnly")
    code, details = await _code(call(b"", metadata=bearer_metadata(factory.issue(role="lab_user")), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "platform_admin" in details
    token = factory.issue(user_id="boss", role="platform_admin")
    assert await call(b"", metadata=bearer_metadata(token), timeout=5) == b"boss"


async def test_interceptor_public_and_health(secured, factory):
    call = secured.unary_unary(f"/{SERVICE}/Public")
    assert await call(b"", timeout=5) == b"anonymous"
    assert await call(b"", metadata=bearer_metadata("garbage"), timeout=5) == b"anonymous"
    assert await call(b"", metadata=bearer_metadata(factory.issue(user_id="u1")), timeout=5) == b"u1"
    reply = await health_pb2_grpc.HealthStub(secured).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_interceptor_streams(secured, factory):
    token = factory.issue(user_id="s1")
    items = [i async for i in secured.unary_stream(f"/{SERVICE}/Stream")(b"", metadata=bearer_metadata(token), timeout=5)]
    assert items == [b"s1:0", b"s1:1", b"s1:2"]

    async def gen():
        for _ in range(4):
            yield b"x"

    assert await secured.stream_unary(f"/{SERVICE}/ClientStream")(gen(), metadata=bearer_metadata(token), timeout=5) == b"s1:4"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in secured.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=5):
            pass
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_interceptor_rejects_revoked(secured, factory, redis_url):
    token = factory.issue(user_id="gone")
    call = secured.unary_unary(f"/{SERVICE}/WhoAmI")
    await call(b"", metadata=bearer_metadata(token), timeout=5)
    r = aioredis.Redis.from_url(redis_url)
    await revoke_user_tokens(r, "gone")
    await r.aclose()
    code, details = await _code(call(b"", metadata=bearer_metadata(token), timeout=5))
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "token revoked")


def test_require_role_outside_rpc():
    with pytest.raises(Unauthenticated):
        current_principal()
    with pytest.raises(Unauthenticated):
        require_role("lab_user")
    assert issubclass(PermissionDenied, Exception)


# ---- AuthKeyProvider against a real (minimal) AuthService -----------------------------


class _KeysOnly(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, factories: list[TokenFactory]) -> None:
        self.factories = factories
        self.calls = 0

    async def GetPublicKeys(self, request, context):
        self.calls += 1
        return auth_pb2.PublicKeySet(
            keys=[auth_pb2.PublicKey(kid=f.kid, algorithm="EdDSA", public_key_pem=f.public_pem) for f in self.factories],
            issuer="hemovision-auth",
            audience="hemovision",
            max_age_seconds=300,
        )


async def test_auth_key_provider_caches_and_refetches_on_unknown_kid(factory):
    servicer = _KeysOnly([factory])
    running = await create_server(
        GrpcServiceSettings(port=0),
        service_names=["hemovision.auth.v1.AuthService"],
        register=lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, s),
    )
    provider = AuthKeyProvider(f"127.0.0.1:{running.port}", min_refetch_interval=0)
    from hemovision_tokens import TokenVerifier

    verifier = TokenVerifier(provider, redis_url=None)
    try:
        for _ in range(3):
            await verifier.verify(factory.issue())
        assert servicer.calls == 1
        rotated = TokenFactory()
        servicer.factories.insert(0, rotated)
        assert (await verifier.verify(rotated.issue(user_id="r"))).user_id == "r"
        assert servicer.calls == 2
        with pytest.raises(TokenError, match="unknown key"):
            await verifier.verify(TokenFactory().issue())
    finally:
        await verifier.close()
        await running.stop(0)


async def test_auth_key_provider_unreachable_is_unavailable(factory):
    from hemovision_grpc_server import Unavailable

    provider = AuthKeyProvider("127.0.0.1:1", timeout=0.5)
    with pytest.raises(Unavailable):
        await provider.get_key(factory.kid)
    await provider.close()
