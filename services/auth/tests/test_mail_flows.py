"""E-mail verification and password reset through a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import uuid

import grpc
import pytest

from hemovision.auth.v1 import auth_pb2, auth_pb2_grpc
from hemovision_auth.server import create_server
from hemovision_auth.settings import Settings
from hemovision_tokens import AuthKeyProvider, TokenError, TokenVerifier, bearer_metadata as md

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a whole new passphrase"


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


async def test_email_verification(auth):
    user = await auth.register()
    mail = auth.inbox.to(user.email)[-1]
    assert "Confirm" in mail["Subject"] and mail["From"] == auth.settings.mail_sender
    token = auth.inbox.last_token(user.email, "verify-email")
    verified = await auth.stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=token), timeout=5)
    assert verified.id == user.id and verified.email_verified
    err = await rpc_error(auth.stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=token), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid or has expired" in err.details()

    # asking again once verified sends nothing
    pair = await auth.login(user.email)
    count = len(auth.inbox.to(user.email))
    await auth.stub.RequestEmailVerification(auth_pb2.RequestEmailVerificationRequest(), metadata=md(pair.access_token), timeout=5)
    assert len(auth.inbox.to(user.email)) == count


async def test_required_verification_sets_ev_claim(runtime_url, redis_url, smtp):
    settings = Settings(
        port=0,
        database_url=runtime_url,
        redis_url=redis_url,
        mail_backend="smtp",
        smtp_port=smtp.port,
        public_base_url="http://hv.test",
        require_email_verification=True,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    server = await create_server(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    verifier = TokenVerifier(AuthKeyProvider(f"127.0.0.1:{server.port}"), redis_url=redis_url)
    try:
        addr = f"ev-{uuid.uuid4().hex[:8]}@lab.example"
        await stub.Register(
            auth_pb2.RegisterRequest(email=addr, password=PASSWORD, organization_name=f"EV {addr}"), timeout=10
        )
        pair = await stub.Login(auth_pb2.LoginRequest(email=addr, password=PASSWORD), timeout=10)
        assert (await verifier.verify(pair.access_token)).email_verified is False

        # a second link: the newest one works, and verifying once uses up the older one too
        await stub.RequestEmailVerification(auth_pb2.RequestEmailVerificationRequest(), metadata=md(pair.access_token), timeout=5)
        assert len(smtp.to(addr)) == 2
        await stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=smtp.last_token(addr, "verify-email")), timeout=5)
        refreshed = await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5)
        assert (await verifier.verify(refreshed.access_token)).email_verified is True
    finally:
        await verifier.close()
        await channel.close()
        await server.stop(0)


async def test_password_reset(auth):
    user, pair = await auth.signed_up()
    await auth.stub.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=user.email.upper()), timeout=5)
    token = auth.inbox.last_token(user.email, "reset-password")
    assert "Reset" in auth.inbox.to(user.email)[-1]["Subject"]

    err = await rpc_error(auth.stub.ResetPassword(auth_pb2.ResetPasswordRequest(token=token, new_password="short"), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "at least 10" in err.details()
    await auth.stub.ResetPassword(auth_pb2.ResetPasswordRequest(token=token, new_password=NEW_PASSWORD), timeout=5)
    err = await rpc_error(auth.stub.ResetPassword(auth_pb2.ResetPasswordRequest(token=token, new_password=NEW_PASSWORD), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(TokenError, match="token revoked"):  # every session ends
        await auth.verifier.verify(pair.access_token)
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = await rpc_error(auth.login(user.email, PASSWORD))
    assert err.details() == "invalid e-mail or password"
    fresh = await auth.login(user.email, NEW_PASSWORD)
    await auth.verifier.verify(fresh.access_token)


async def test_password_reset_for_unknown_address_answers_the_same(auth):
    before = len(auth.inbox.messages)
    await auth.stub.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email="ghost@lab.example"), timeout=5)
    assert len(auth.inbox.messages) == before
    err = await rpc_error(auth.stub.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email="ghost"), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_change_password(auth):
    user, pair = await auth.signed_up()
    err = await rpc_error(
        auth.stub.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password="wrong password", new_password=NEW_PASSWORD),
            metadata=md(pair.access_token),
            timeout=5,
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "current password" in err.details()
    await auth.stub.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=md(pair.access_token),
        timeout=5,
    )
    with pytest.raises(TokenError, match="token revoked"):
        await auth.verifier.verify(pair.access_token)
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    fresh = await auth.login(user.email, NEW_PASSWORD)  # issued after the revocation mark: valid
    assert (await auth.verifier.verify(fresh.access_token)).user_id == user.id


async def test_expired_links_and_refresh_tokens(runtime_url, redis_url, smtp):
    settings = Settings(
        port=0,
        database_url=runtime_url,
        redis_url=redis_url,
        mail_backend="smtp",
        smtp_port=smtp.port,
        public_base_url="http://hv.test",
        refresh_token_ttl_s=0,
        email_verification_ttl_s=0,
        password_reset_ttl_s=0,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    server = await create_server(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    try:
        addr = f"exp-{uuid.uuid4().hex[:8]}@lab.example"
        await stub.Register(auth_pb2.RegisterRequest(email=addr, password=PASSWORD, organization_name=f"Exp {addr}"), timeout=10)
        err = await rpc_error(stub.VerifyEmail(auth_pb2.VerifyEmailRequest(token=smtp.last_token(addr, "verify-email")), timeout=5))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "expired" in err.details()
        pair = await stub.Login(auth_pb2.LoginRequest(email=addr, password=PASSWORD), timeout=10)
        err = await rpc_error(stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5))
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "refresh token expired")
        await stub.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=addr), timeout=5)
        err = await rpc_error(
            stub.ResetPassword(
                auth_pb2.ResetPasswordRequest(token=smtp.last_token(addr, "reset-password"), new_password=NEW_PASSWORD),
                timeout=5,
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "expired" in err.details()
    finally:
        await channel.close()
        await server.stop(0)
