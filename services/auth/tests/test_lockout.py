"""Sign-in lockout per e-mail (PostgreSQL counters, across replicas), its backoff, UnlockUser,
User.locked_until; and the common-password policy."""

from __future__ import annotations

import uuid

import grpc
import pytest
from sqlalchemy import text

from hemovision.auth.v1 import auth_pb2
from hemovision.common.v1 import common_pb2
from hemovision_auth.service.lockout import LoginThrottle
from hemovision_tokens import bearer_metadata as md

PASSWORD = "correct horse battery"
WRONG = "not the right password"


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


@pytest.fixture
async def strict(start_auth):
    """Two replicas of auth on one database: 3 failures in 60 s lock for 30 s, doubling up to 100 s."""
    overrides = dict(lockout_threshold=3, lockout_window_s=60, lockout_base_s=30, lockout_max_s=100)
    return await start_auth(**overrides), await start_auth(**overrides)


def _retry_after(err: grpc.aio.AioRpcError) -> int:
    values = [v for k, v in (err.trailing_metadata() or ()) if k == "retry-after"]
    assert len(values) == 1, err.trailing_metadata()
    return int(values[0])


def _expire_lock(engine, email: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE auth.login_attempts SET locked_until = now() - interval '1 second' WHERE email = :e"),
            {"e": email},
        )


async def test_lockout_across_replicas_refuses_even_the_right_password(strict, engine):
    a, b = strict
    user = await a.register()
    for client in (a, b):  # failures counted in PostgreSQL: two on one replica, one on the other
        err = await rpc_error(client.login(user.email, WRONG))
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid e-mail or password")
    err = await rpc_error(a.login(user.email.upper(), WRONG))  # the same address, normalised
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == f"too many failed sign-ins; try again in {_retry_after(err)} s"
    assert 29 <= _retry_after(err) <= 30

    for client in (a, b):
        err = await rpc_error(client.login(user.email, PASSWORD))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many failed sign-ins" in err.details()
        assert 1 <= _retry_after(err) <= 30

    # User.locked_until is filled where a User is returned
    admin = await a.login(a.platform_admin())
    shown = await a.stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id), metadata=md(admin.access_token), timeout=5)
    assert shown.HasField("locked_until") and shown.locked_until.seconds > 0

    # the lock runs out: the right password works and resets the counters
    _expire_lock(engine, user.email)
    pair = await b.login(user.email, PASSWORD)
    assert (await a.verifier.verify(pair.access_token)).user_id == user.id
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.login_attempts WHERE email = :e"), {"e": user.email}).scalar() == 0
    shown = await a.stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id), metadata=md(admin.access_token), timeout=5)
    assert not shown.HasField("locked_until")


async def test_backoff_doubles_up_to_the_maximum(strict, engine):
    a, _ = strict
    user = await a.register()
    seen = []
    for _ in range(3):
        for _ in range(2):
            await rpc_error(a.login(user.email, WRONG))
        err = await rpc_error(a.login(user.email, WRONG))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        seen.append(_retry_after(err))
        _expire_lock(engine, user.email)
    assert seen == [30, 60, 100]  # 30 s, doubled, capped at lockout_max_s
    # after a successful sign-in the next lockout starts from the base again
    await a.login(user.email, PASSWORD)
    for _ in range(2):
        await rpc_error(a.login(user.email, WRONG))
    assert _retry_after(await rpc_error(a.login(user.email, WRONG))) == 30


async def test_unknown_addresses_lock_the_same_way(strict):
    a, _ = strict
    ghost = f"ghost-{uuid.uuid4().hex[:8]}@lab.example"
    answers = [await rpc_error(a.login(ghost, WRONG)) for _ in range(4)]
    assert [e.code() for e in answers] == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    assert "too many failed sign-ins" in answers[-1].details()


async def test_failures_while_locked_are_not_counted_and_success_resets(strict, engine):
    a, _ = strict
    user = await a.register()
    for _ in range(2):
        await rpc_error(a.login(user.email, WRONG))
    await a.login(user.email, PASSWORD)  # resets the counter: two more failures do not lock
    for _ in range(2):
        await rpc_error(a.login(user.email, WRONG))
    await a.login(user.email, PASSWORD)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM auth.login_attempts WHERE email = :e"), {"e": user.email}).scalar() == 0


async def test_unlock_user(strict):
    a, _ = strict
    admin, admin_pair = await a.signed_up()
    addr = f"tech-{uuid.uuid4().hex[:8]}@lab.example"
    await a.stub.InviteUser(auth_pb2.InviteUserRequest(email=addr), metadata=md(admin_pair.access_token), timeout=10)
    tech = await a.stub.AcceptInvitation(
        auth_pb2.AcceptInvitationRequest(token=a.inbox.last_token(addr, "accept-invite"), password=PASSWORD), timeout=10
    )
    tech_pair = await a.login(addr)
    for _ in range(3):
        await rpc_error(a.login(addr, WRONG))
    assert (await rpc_error(a.login(addr))).code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    listed = await a.stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=md(admin_pair.access_token), timeout=5)
    assert {u.id: u.HasField("locked_until") for u in listed.users} == {admin.id: False, tech.id: True}

    # a lab_user may not unlock; another organization's admin does not see the user
    err = await rpc_error(a.stub.UnlockUser(auth_pb2.UnlockUserRequest(user_id=tech.id), metadata=md(tech_pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "org_admin" in err.details()
    _, other = await a.signed_up()
    err = await rpc_error(a.stub.UnlockUser(auth_pb2.UnlockUserRequest(user_id=tech.id), metadata=md(other.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(a.stub.UnlockUser(auth_pb2.UnlockUserRequest(user_id="nope"), metadata=md(admin_pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    unlocked = await a.stub.UnlockUser(auth_pb2.UnlockUserRequest(user_id=tech.id), metadata=md(admin_pair.access_token), timeout=5)
    assert unlocked.id == tech.id and not unlocked.HasField("locked_until")
    assert (await a.login(addr)).access_token

    # a platform_admin unlocks anyone
    for _ in range(3):
        await rpc_error(a.login(admin.email, WRONG))
    root = await a.login(a.platform_admin())
    await a.stub.UnlockUser(auth_pb2.UnlockUserRequest(user_id=admin.id), metadata=md(root.access_token), timeout=5)
    assert (await a.login(admin.email)).access_token


async def test_login_input_limits(auth):
    err = await rpc_error(auth.login("x" * 400 + "@lab.example", WRONG))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "e-mail" in err.details()
    err = await rpc_error(auth.login("a\x00b@lab.example", WRONG))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_backoff_formula():
    throttle = LoginThrottle(threshold=5, window_s=900, base_s=60, max_s=3600, memory_s=86400)
    assert [throttle.backoff_s(n) for n in (1, 2, 3, 6, 7, 100)] == [60, 120, 240, 1920, 3600, 3600]


# ---- password policy --------------------------------------------------------------------------------

COMMON = ["qwertyuiop", "Password123", "1q2w3e4r5t6y"]  # in zxcvbn's 30k list (case-insensitive)


@pytest.mark.parametrize("password", COMMON)
async def test_register_refuses_common_passwords(auth, password):
    err = await rpc_error(auth.register(password=password))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "password is one of the most common passwords (found in lists of leaked passwords); choose another"


async def test_common_passwords_refused_everywhere(auth):
    user, pair = await auth.signed_up()
    err = await rpc_error(
        auth.stub.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password="qwertyuiop"),
            metadata=md(pair.access_token), timeout=5,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("new password is one of the most common")

    await auth.stub.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=user.email), timeout=10)
    token = auth.inbox.last_token(user.email, "reset-password")
    err = await rpc_error(auth.stub.ResetPassword(auth_pb2.ResetPasswordRequest(token=token, new_password="1234567890"), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "most common" in err.details()

    addr = f"inv-{uuid.uuid4().hex[:8]}@lab.example"
    await auth.stub.InviteUser(
        auth_pb2.InviteUserRequest(email=addr, role=common_pb2.ROLE_LAB_USER), metadata=md(pair.access_token), timeout=10
    )
    invite = auth.inbox.last_token(addr, "accept-invite")
    err = await rpc_error(auth.stub.AcceptInvitation(auth_pb2.AcceptInvitationRequest(token=invite, password="Manchester"), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "most common" in err.details()
    # the length rule still comes first, and an uncommon password passes
    err = await rpc_error(auth.stub.AcceptInvitation(auth_pb2.AcceptInvitationRequest(token=invite, password="short"), timeout=5))
    assert "at least 10 characters" in err.details()
    await auth.stub.AcceptInvitation(auth_pb2.AcceptInvitationRequest(token=invite, password=PASSWORD), timeout=5)
