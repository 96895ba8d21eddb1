"""Register, login, refresh rotation and reuse detection, logout revocation, bad input, keys;
the caller's sessions (ListSessions, RevokeSession, SignOutEverywhere)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision.auth.v1 import auth_pb2
from hemovision.common.v1 import common_pb2
from hemovision_contracts import origin_metadata
from hemovision_tokens import AuthKeyProvider, TokenError, TokenVerifier, bearer_metadata as md

PASSWORD = "correct horse battery"


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


async def test_health(auth):
    reply = await health_pb2_grpc.HealthStub(auth.channel).Check(
        health_pb2.HealthCheckRequest(service="hemovision.auth.v1.AuthService"), timeout=5
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_register_login_and_me(auth):
    user = await auth.register("Alice@Lab.Example", "Alice's Lab")
    assert user.email == "alice@lab.example"
    assert user.role == common_pb2.ROLE_ORG_ADMIN
    assert user.organization_name == "Alice's Lab" and user.active and not user.email_verified

    pair = await auth.login("ALICE@lab.example")
    assert pair.token_type == "bearer" and pair.expires_in == 900 and pair.refresh_token.startswith("hvr_")
    principal = await auth.verifier.verify(pair.access_token)
    assert principal.user_id == user.id
    assert principal.organization_id == user.organization_id
    assert principal.role == "org_admin" and principal.email == "alice@lab.example"
    assert principal.email_verified  # verification not required in development

    me = await auth.stub.GetMe(auth_pb2.GetMeRequest(), metadata=md(pair.access_token), timeout=5)
    assert me.id == user.id and me.organization_id == user.organization_id


@pytest.mark.parametrize(
    ("email", "password", "org", "code", "needle"),
    [
        ("not-an-email", PASSWORD, "Org X1", grpc.StatusCode.INVALID_ARGUMENT, "not a valid e-mail"),
        ("", PASSWORD, "Org X2", grpc.StatusCode.INVALID_ARGUMENT, "e-mail address is required"),
        ("short@lab.example", "short", "Org X3", grpc.StatusCode.INVALID_ARGUMENT, "at least 10 characters"),
        ("noorg@lab.example", PASSWORD, " ", grpc.StatusCode.INVALID_ARGUMENT, "organization name is required"),
    ],
)
async def test_register_bad_input(auth, email, password, org, code, needle):
    err = await rpc_error(
        auth.stub.Register(auth_pb2.RegisterRequest(email=email, password=password, organization_name=org), timeout=5)
    )
    assert err.code() == code and needle in err.details()


async def test_duplicates_and_wrong_password(auth):
    user = await auth.register("dup@lab.example", "Dup Lab")
    err = await rpc_error(auth.register("dup@lab.example", "Other Lab"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "e-mail" in err.details()
    err = await rpc_error(auth.register("other@lab.example", "dup lab"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "organization" in err.details()

    wrong = await rpc_error(auth.login(user.email, "wrong password!!"))
    unknown = await rpc_error(auth.login("nobody@lab.example", PASSWORD))
    for err in (wrong, unknown):
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.details() == "invalid e-mail or password"


async def test_calls_need_a_token(auth):
    err = await rpc_error(auth.stub.GetMe(auth_pb2.GetMeRequest(), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "authorization" in err.details()
    err = await rpc_error(auth.stub.GetMe(auth_pb2.GetMeRequest(), metadata=md("garbage"), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and err.details() == "malformed token"


async def test_refresh_rotation_and_reuse_detection(auth):
    _, first = await auth.signed_up()
    second = await auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=5)
    assert second.refresh_token != first.refresh_token
    third = await auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token), timeout=5)
    await auth.verifier.verify(third.access_token)

    # first.refresh_token was already rotated: reuse revokes the whole family
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "already used" in err.details()
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=third.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    for pair in (second, third):  # access tokens of the family are revoked too
        with pytest.raises(TokenError, match="token revoked"):
            await auth.verifier.verify(pair.access_token)

    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token="hvr_nonsense"), timeout=5))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid refresh token")


async def test_logout_revokes_access_and_refresh(auth):
    user, pair = await auth.signed_up()
    other = await auth.login(user.email)  # a second session stays alive
    await auth.stub.Logout(auth_pb2.LogoutRequest(refresh_token=pair.refresh_token), metadata=md(pair.access_token), timeout=5)
    with pytest.raises(TokenError, match="token revoked"):
        await auth.verifier.verify(pair.access_token)
    err = await rpc_error(auth.stub.GetMe(auth_pb2.GetMeRequest(), metadata=md(pair.access_token), timeout=5))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "token revoked")
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.verifier.verify(other.access_token)).user_id == user.id


async def test_logout_without_refresh_token_finds_the_family(auth):
    _, pair = await auth.signed_up()
    await auth.stub.Logout(auth_pb2.LogoutRequest(), metadata=md(pair.access_token), timeout=5)
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_key_rotation_keeps_old_tokens_valid(auth):
    _, pair = await auth.signed_up()
    admin = await auth.login(auth.platform_admin())
    err = await rpc_error(
        auth.stub.RotateSigningKey(auth_pb2.RotateSigningKeyRequest(), metadata=md(pair.access_token), timeout=5)
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    before = await auth.stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=5)
    new_key = await auth.stub.RotateSigningKey(
        auth_pb2.RotateSigningKeyRequest(), metadata=md(admin.access_token), timeout=5
    )
    keys = await auth.stub.GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=5)
    assert keys.keys[0].kid == new_key.kid and keys.keys[0].current
    assert before.keys[0].kid in {k.kid for k in keys.keys[1:]}
    assert keys.issuer == "hemovision-auth" and keys.audience == "hemovision" and keys.max_age_seconds == 300
    assert all(k.algorithm == "EdDSA" for k in keys.keys)

    auth.server.service.keys.forget_current()
    fresh = TokenVerifier(AuthKeyProvider(auth.addr), redis_url=None)
    user_after = await auth.login(admin_email := (await auth.stub.GetMe(auth_pb2.GetMeRequest(), metadata=md(admin.access_token), timeout=5)).email)
    import jwt

    assert jwt.get_unverified_header(user_after.access_token)["kid"] == new_key.kid
    assert jwt.get_unverified_header(pair.access_token)["kid"] == before.keys[0].kid
    assert (await fresh.verify(pair.access_token)).role == "org_admin"  # old key still published
    assert (await fresh.verify(user_after.access_token)).email == admin_email
    # the long-lived verifier learns the new kid on its own (refetch on unknown kid)
    assert (await auth.verifier.verify(user_after.access_token)).role == "platform_admin"
    await fresh.close()


async def test_concurrent_refresh_of_one_token_succeeds_once(auth):
    import asyncio

    _, pair = await auth.signed_up()
    results = await asyncio.gather(
        *(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5) for _ in range(3)),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, auth_pb2.TokenPair)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and len(failed) == 2
    assert all(f.code() == grpc.StatusCode.UNAUTHENTICATED for f in failed)


# ---- sessions: ListSessions, RevokeSession, SignOutEverywhere ------------------------------------

def _from(ip: str, agent: str, token: str | None = None):
    return (*(md(token) if token else ()), *origin_metadata(ip, agent))


async def test_list_sessions_with_origin_and_current(auth):
    user = await auth.register()
    laptop = await auth.stub.Login(
        auth_pb2.LoginRequest(email=user.email, password=PASSWORD), metadata=_from("203.0.113.7", "Firefox/140"), timeout=10
    )
    phone = await auth.stub.Login(
        auth_pb2.LoginRequest(email=user.email, password=PASSWORD), metadata=_from("198.51.100.2", "Safari/18"), timeout=10
    )
    # a refresh keeps the session (same family) and moves last_used_at
    phone2 = await auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=phone.refresh_token), timeout=5)
    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(phone2.access_token), timeout=5)
    assert [(s.client_ip, s.user_agent, s.current) for s in listed.items] == [
        ("198.51.100.2", "Safari/18", True),
        ("203.0.113.7", "Firefox/140", False),
    ]
    newest = listed.items[0]
    assert newest.last_used_at.ToDatetime() >= newest.created_at.ToDatetime()
    from_laptop = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(laptop.access_token), timeout=5)
    assert [s.current for s in from_laptop.items] == [False, True]

    # a logged-out session is gone from the list
    await auth.stub.Logout(auth_pb2.LogoutRequest(), metadata=md(laptop.access_token), timeout=5)
    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(phone2.access_token), timeout=5)
    assert [s.client_ip for s in listed.items] == ["198.51.100.2"]


async def test_revoke_session_ends_its_tokens_only(auth):
    user, first = await auth.signed_up()
    second = await auth.login(user.email)
    sessions = (await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(first.access_token), timeout=5)).items
    other_id = next(s.id for s in sessions if not s.current)
    await auth.stub.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=other_id), metadata=md(first.access_token), timeout=5)
    with pytest.raises(TokenError, match="token revoked"):
        await auth.verifier.verify(second.access_token)
    err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await auth.verifier.verify(first.access_token)).user_id == user.id

    # ended already, someone else's, or not a UUID
    err = await rpc_error(auth.stub.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=other_id), metadata=md(first.access_token), timeout=5))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "session not found")
    _, stranger = await auth.signed_up()
    mine = (await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(first.access_token), timeout=5)).items[0]
    err = await rpc_error(auth.stub.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=mine.id), metadata=md(stranger.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(auth.stub.RevokeSession(auth_pb2.RevokeSessionRequest(session_id="x"), metadata=md(first.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "session_id" in err.details()


async def test_sign_out_everywhere_self(auth):
    user, first = await auth.signed_up()
    second = await auth.login(user.email)
    reply = await auth.stub.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(), metadata=md(first.access_token), timeout=5)
    assert reply.sessions_ended == 2
    for pair in (first, second):
        with pytest.raises(TokenError, match="token revoked"):
            await auth.verifier.verify(pair.access_token)
        err = await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=5))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    fresh = await auth.login(user.email)  # signing in again works
    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(fresh.access_token), timeout=5)
    assert len(listed.items) == 1 and listed.items[0].current


async def test_sign_out_everywhere_for_a_managed_user(auth):
    admin, admin_pair = await auth.signed_up()
    addr = f"tech-{uuid.uuid4().hex[:8]}@lab.example"
    await auth.stub.InviteUser(auth_pb2.InviteUserRequest(email=addr), metadata=md(admin_pair.access_token), timeout=10)
    tech = await auth.stub.AcceptInvitation(
        auth_pb2.AcceptInvitationRequest(token=auth.inbox.last_token(addr, "accept-invite"), password=PASSWORD), timeout=10
    )
    tech_pair = await auth.login(addr)

    # a lab_user cannot sign out someone else; another organization's admin does not see the user
    err = await rpc_error(auth.stub.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(user_id=admin.id), metadata=md(tech_pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    _, other = await auth.signed_up()
    err = await rpc_error(auth.stub.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(user_id=tech.id), metadata=md(other.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    reply = await auth.stub.SignOutEverywhere(
        auth_pb2.SignOutEverywhereRequest(user_id=tech.id), metadata=md(admin_pair.access_token), timeout=5
    )
    assert reply.sessions_ended == 1
    with pytest.raises(TokenError, match="token revoked"):
        await auth.verifier.verify(tech_pair.access_token)
    assert (await auth.verifier.verify(admin_pair.access_token)).user_id == admin.id  # the admin's own stays
    # an org_admin cannot sign out a platform user
    root_email = auth.platform_admin()
    root = await auth.login(root_email)
    root_id = (await auth.verifier.verify(root.access_token)).user_id
    err = await rpc_error(auth.stub.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(user_id=root_id), metadata=md(admin_pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # a platform_admin can sign out anyone
    reply = await auth.stub.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(user_id=admin.id), metadata=md(root.access_token), timeout=5)
    assert reply.sessions_ended == 1


async def test_on_behalf_of_tokens_cannot_end_sessions(auth):
    user, _ = await auth.signed_up()
    obo = await auth.stub.IssueOnBehalfOfToken(
        auth_pb2.IssueOnBehalfOfTokenRequest(service_id="batch-worker", service_secret="worker-secret-123",
                                             user_id=user.id, purpose="test"),
        timeout=5,
    )
    err = await rpc_error(auth.stub.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(), metadata=md(obo.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "on-behalf-of" in err.details()
    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(obo.access_token), timeout=5)
    assert len(listed.items) == 1 and not listed.items[0].current
