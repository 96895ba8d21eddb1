"""Audit events: an outbox row for each kind, in the transaction of its change (none for a refused
call), never a password; the forwarder against a fake sink (batches, retry with backoff,
redelivery by id) and inside the server's lifecycle; history's sink and auth's service token
against an in-process fake HistoryService."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from sqlalchemy import text

from hemovision.auth.v1 import auth_pb2
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision_auth import audit
from hemovision_auth.domain import Origin
from hemovision_auth.audit import AuditForwarder, HistoryAuditSink, OutboxEvent, ServiceTokenSource
from hemovision_contracts import origin_metadata
from hemovision_tokens import AuthKeyProvider, TokenVerifier, bearer_metadata as md

PASSWORD = "correct horse battery"
WRONG = "wrong-password-attempt"
NEW_PASSWORD = "a whole new passphrase"
IP = "203.0.113.9"


async def rpc_error(awaitable) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


def _md(token: str | None = None, ip: str = IP, agent: str = "TestBrowser/1.0"):
    return (*(md(token) if token else ()), *origin_metadata(ip, agent))


def events(engine, *, action: str | None = None, since: datetime | None = None) -> list[dict]:
    q = "SELECT * FROM auth.audit_outbox WHERE true"
    args: dict = {}
    if action:
        q += " AND action = :action"
        args["action"] = action
    if since:
        q += " AND occurred_at >= :since"
        args["since"] = since
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(q + " ORDER BY occurred_at, id"), args)]
    for r in rows:
        r["details"] = json.loads(r["details_json"])
    return rows


def one(engine, action: str, since: datetime, **expected) -> dict:
    found = [e for e in events(engine, action=action, since=since)
             if all(str(e[k]) == str(v) for k, v in expected.items())]
    assert len(found) == 1, (action, expected, events(engine, action=action, since=since))
    return found[0]


async def test_every_event_kind_is_recorded_with_its_origin(start_auth, engine):
    auth = await start_auth(lockout_threshold=2)
    start = datetime.now(UTC)
    admin = await auth.register()
    org = admin.organization_id

    admin_pair = await auth.stub.Login(auth_pb2.LoginRequest(email=admin.email, password=PASSWORD), metadata=_md(), timeout=10)
    login = one(engine, audit.LOGIN, start, user_id=admin.id, organization_id=org, client_ip=IP, target_type="session")
    assert login["details"] == {"user_agent": "TestBrowser/1.0"}
    session_id = login["target_id"]
    a = md(admin_pair.access_token)
    am = _md(admin_pair.access_token)
    listed = await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=a, timeout=5)
    assert [s.id for s in listed.items] == [session_id]

    # failed sign-ins: the address tried, never the password; the second one locks
    await rpc_error(auth.stub.Login(auth_pb2.LoginRequest(email=admin.email, password=WRONG), metadata=_md(), timeout=10))
    failed = one(engine, audit.LOGIN_FAILED, start, target_id=admin.id)
    assert (failed["user_id"], failed["organization_id"], failed["client_ip"]) == ("", org, IP)
    assert failed["details"]["email"] == admin.email and failed["details"]["reason"] == "wrong_password"
    ghost = f"ghost-{uuid.uuid4().hex[:6]}@lab.example"
    await rpc_error(auth.stub.Login(auth_pb2.LoginRequest(email=ghost, password=WRONG), metadata=_md(), timeout=10))
    failed = [e for e in events(engine, action=audit.LOGIN_FAILED, since=start) if e["details"]["email"] == ghost]
    assert len(failed) == 1 and failed[0]["organization_id"] == "" and failed[0]["target_id"] == ""
    assert failed[0]["details"]["reason"] == "unknown_email"
    err = await rpc_error(auth.stub.Login(auth_pb2.LoginRequest(email=admin.email, password=WRONG), metadata=_md(), timeout=10))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    lockout = one(engine, audit.LOCKOUT, start, target_id=admin.id, organization_id=org, client_ip=IP)
    assert lockout["details"]["locked_for_s"] == 60 and lockout["details"]["email"] == admin.email
    await rpc_error(auth.stub.Login(auth_pb2.LoginRequest(email=admin.email, password=PASSWORD), metadata=_md(), timeout=10))
    assert [e["details"]["reason"] for e in events(engine, action=audit.LOGIN_FAILED, since=start)
            if e["target_id"] == admin.id][-1] == "locked"

    # invitation, acceptance, unlock, role change, deactivate / activate
    addr = f"tech-{uuid.uuid4().hex[:6]}@lab.example"
    inv = await auth.stub.InviteUser(auth_pb2.InviteUserRequest(email=addr), metadata=am, timeout=10)
    created = one(engine, audit.INVITATION_CREATE, start, target_id=inv.id, user_id=admin.id, organization_id=org)
    assert created["details"] == {"email": addr, "role": "lab_user", "user_agent": "TestBrowser/1.0"}
    tech = await auth.stub.AcceptInvitation(
        auth_pb2.AcceptInvitationRequest(token=auth.inbox.last_token(addr, "accept-invite"), password=PASSWORD),
        metadata=_md(ip="198.51.100.5"), timeout=10,
    )
    accepted = one(engine, audit.INVITATION_ACCEPT, start, target_id=inv.id, user_id=tech.id, organization_id=org)
    assert accepted["client_ip"] == "198.51.100.5" and accepted["details"]["invited_by"] == admin.id
    tech_pair = await auth.login(addr)
    for _ in range(2):
        await rpc_error(auth.login(addr, WRONG))
    await auth.stub.UnlockUser(auth_pb2.UnlockUserRequest(user_id=tech.id), metadata=am, timeout=5)
    unlock = one(engine, audit.UNLOCK, start, target_id=tech.id, user_id=admin.id, organization_id=org, client_ip=IP)
    assert unlock["details"]["was_locked"] is True

    # a refused change writes nothing
    err = await rpc_error(auth.stub.SetUserRole(
        auth_pb2.SetUserRoleRequest(user_id=admin.id, role=common_pb2.ROLE_LAB_USER), metadata=md(tech_pair.access_token), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert events(engine, action=audit.ROLE_CHANGE, since=start) == []

    await auth.stub.SetUserRole(auth_pb2.SetUserRoleRequest(user_id=tech.id, role=common_pb2.ROLE_ORG_ADMIN), metadata=am, timeout=5)
    change = one(engine, audit.ROLE_CHANGE, start, target_id=tech.id, user_id=admin.id)
    assert (change["details"]["from"], change["details"]["to"]) == ("lab_user", "org_admin")
    await auth.stub.SetUserActive(auth_pb2.SetUserActiveRequest(user_id=tech.id, active=False), metadata=am, timeout=5)
    one(engine, audit.DEACTIVATE, start, target_id=tech.id, user_id=admin.id, organization_id=org)
    await auth.stub.SetUserActive(auth_pb2.SetUserActiveRequest(user_id=tech.id, active=True), metadata=am, timeout=5)
    one(engine, audit.ACTIVATE, start, target_id=tech.id, user_id=admin.id, organization_id=org)

    # API keys
    key = await auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="script"), metadata=am, timeout=5)
    made = one(engine, audit.API_KEY_CREATE, start, target_id=key.id, user_id=admin.id, organization_id=org)
    assert made["details"]["prefix"] == key.prefix and key.secret not in made["details_json"]
    await auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key.id), metadata=am, timeout=5)
    await auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key.id), metadata=am, timeout=5)  # no-op: no event
    one(engine, audit.API_KEY_REVOKE, start, target_id=key.id, user_id=admin.id)

    # sessions: revoke one, refresh reuse, logout, sign out everywhere
    tech_pair = await auth.login(addr)
    other = await auth.login(addr)
    sessions = (await auth.stub.ListSessions(auth_pb2.ListSessionsRequest(), metadata=md(tech_pair.access_token), timeout=5)).items
    victim = next(s.id for s in sessions if not s.current)
    await auth.stub.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=victim), metadata=_md(tech_pair.access_token), timeout=5)
    one(engine, audit.SESSION_REVOKE, start, target_id=victim, user_id=tech.id, organization_id=org, client_ip=IP)
    assert other.refresh_token  # its family is the one revoked
    rotated = await auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=tech_pair.refresh_token), timeout=5)
    await rpc_error(auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=tech_pair.refresh_token), timeout=5))
    one(engine, audit.REFRESH_REUSE, start, user_id=tech.id, organization_id=org)
    assert rotated.access_token
    spare = await auth.login(addr)
    await auth.stub.Logout(auth_pb2.LogoutRequest(refresh_token=spare.refresh_token), metadata=_md(spare.access_token), timeout=5)
    logout = one(engine, audit.LOGOUT, start, user_id=tech.id, organization_id=org, client_ip=IP)
    assert len(logout["details"]["sessions"]) == 1 and logout["target_id"] == logout["details"]["sessions"][0]
    await auth.login(addr)
    reply = await auth.stub.SignOutEverywhere(auth_pb2.SignOutEverywhereRequest(user_id=tech.id), metadata=am, timeout=5)
    everywhere = one(engine, audit.SIGN_OUT_EVERYWHERE, start, target_id=tech.id, user_id=admin.id, organization_id=org)
    assert everywhere["details"]["sessions_ended"] == reply.sessions_ended == 1

    # passwords: change and reset
    tech_pair = await auth.login(addr)
    await auth.stub.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=_md(tech_pair.access_token), timeout=10,
    )
    one(engine, audit.PASSWORD_CHANGE, start, target_id=tech.id, user_id=tech.id, organization_id=org, client_ip=IP)
    await auth.stub.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=addr), timeout=10)
    await auth.stub.ResetPassword(
        auth_pb2.ResetPasswordRequest(token=auth.inbox.last_token(addr, "reset-password"), new_password=PASSWORD),
        metadata=_md(ip="192.0.2.44"), timeout=10,
    )
    one(engine, audit.PASSWORD_RESET, start, target_id=tech.id, user_id=tech.id, organization_id=org, client_ip="192.0.2.44")

    # deletion (the event outlives the user)
    await auth.stub.DeleteUser(auth_pb2.DeleteUserRequest(user_id=tech.id), metadata=a, timeout=5)
    deleted = one(engine, audit.USER_DELETE, start, target_id=tech.id, user_id=admin.id, organization_id=org)
    assert deleted["details"]["email"] == addr and deleted["client_ip"] == ""  # sent without origin metadata

    recorded = events(engine, since=start)
    assert {e["action"] for e in recorded} == set(audit.ACTIONS)
    for secret in (PASSWORD, WRONG, NEW_PASSWORD, admin_pair.access_token, admin_pair.refresh_token):
        assert all(secret not in e["details_json"] for e in recorded)
    assert all(e["forwarded_at"] is None for e in recorded)  # forwarding is off in these servers


# ---- forwarding -------------------------------------------------------------------------------------


class FakeSink:
    """Stores events by id (like history); fails while `failing`, after `delay_s`."""

    def __init__(self) -> None:
        self.stored: dict[str, OutboxEvent] = {}
        self.calls: list[list[str]] = []
        self.failing = False
        self.delay_s = 0.0

    async def append(self, events) -> None:
        self.calls.append([e.id for e in events])
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "history is down")
        for e in events:
            self.stored.setdefault(e.id, e)


def _clear_outbox(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM auth.audit_outbox"))


def _record(engine, n: int) -> list[str]:
    ids = []
    with engine.begin() as conn:
        for i in range(n):
            ids.append(str(audit.record(conn, audit.LOGIN_FAILED, details={"email": f"u{i}@lab.example"})))
    return ids


async def test_forwarder_batches_marks_and_retries_with_backoff(engine):
    _clear_outbox(engine)
    ids = _record(engine, 5)
    sink = FakeSink()
    forwarder = AuditForwarder(engine, sink, batch=2, retry_base_s=0.3, retry_max_s=0.6)

    assert [await forwarder.forward_once() for _ in range(4)] == [2, 2, 1, 0]
    assert [i for call in sink.calls for i in call] == ids  # oldest first, the outbox ids as event ids
    assert sink.stored[ids[0]].action == audit.LOGIN_FAILED
    assert json.loads(sink.stored[ids[0]].details_json) == {"email": "u0@lab.example"}
    assert all(e["forwarded_at"] is not None for e in events(engine))

    more = _record(engine, 1)
    sink.failing = True
    assert await forwarder.forward_once() == 0
    (row,) = [e for e in events(engine) if e["forwarded_at"] is None]
    assert row["attempts"] == 1 and row["last_error"] == "UNAVAILABLE: history is down"
    assert await forwarder.forward_once() == 0 and len(sink.calls) == 4  # not due yet: no call
    await asyncio.sleep(0.35)
    assert await forwarder.forward_once() == 0 and len(sink.calls) == 5  # second failure: 0.6 s
    (row,) = [e for e in events(engine) if e["forwarded_at"] is None]
    wait = (row["next_attempt_at"] - datetime.now(UTC)).total_seconds()
    assert row["attempts"] == 2 and 0.3 < wait <= 0.6
    sink.failing = False
    await asyncio.sleep(wait + 0.05)
    assert await forwarder.forward_once() == 1
    assert more[0] in sink.stored and all(e["forwarded_at"] is not None for e in events(engine))


async def test_a_crashed_delivery_is_resent_with_the_same_ids(engine):
    _clear_outbox(engine)
    ids = _record(engine, 3)
    sink = FakeSink()
    crashed = AuditForwarder(engine, sink, lease_s=0.2)
    rows = await asyncio.to_thread(crashed._claim)  # a replica claimed them and died before marking
    assert sorted(str(r.id) for r in rows) == sorted(ids)
    other = AuditForwarder(engine, sink)
    assert await other.forward_once() == 0  # leased: another replica leaves them alone
    await asyncio.sleep(0.25)
    assert await other.forward_once() == 3
    assert sorted(sink.stored) == sorted(ids)


async def test_one_refused_event_does_not_hold_back_its_batch(engine):
    _clear_outbox(engine)
    ids = _record(engine, 3)

    class PickySink(FakeSink):
        async def append(self, events) -> None:
            if any(e.id == ids[1] for e in events):
                self.calls.append([e.id for e in events])
                raise grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                           "events[1].details_json is not an object")
            await super().append(events)

    sink = PickySink()
    assert await AuditForwarder(engine, sink).forward_once() == 2
    assert sorted(sink.stored) == sorted([ids[0], ids[2]])
    (waiting,) = [e for e in events(engine) if e["forwarded_at"] is None]
    assert str(waiting["id"]) == ids[1] and waiting["attempts"] == 2 and "INVALID_ARGUMENT" in waiting["last_error"]


async def test_forwarder_never_slows_a_call(start_auth, engine):
    """With a sink that hangs, sign-ins answer as fast as ever; the events arrive once it recovers."""
    _clear_outbox(engine)
    sink = FakeSink()
    sink.delay_s = 3.0
    sink.failing = True
    auth = await start_auth(audit_sink=sink, audit_forward=True, audit_forward_interval_s=0.05,
                            audit_retry_base_s=0.1, audit_retry_max_s=0.2)
    assert auth.server.service.audit_forwarder is not None
    user = await auth.register()
    began = time.monotonic()
    for _ in range(3):
        await auth.login(user.email)
    assert time.monotonic() - began < 2.0
    sink.delay_s, sink.failing = 0.0, False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(e.action == audit.LOGIN for e in sink.stored.values()) < 3:
        await asyncio.sleep(0.05)
    assert sum(e.action == audit.LOGIN for e in sink.stored.values()) == 3

    # the forwarder stops with the server
    await auth.server.stop(0)
    stopped = len(sink.calls)
    _record(engine, 1)
    await asyncio.sleep(0.3)
    assert len(sink.calls) == stopped


class FakeHistory(history_pb2_grpc.HistoryServiceServicer):
    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier
        self.principals = []
        self.requests = []
        self.deadlines = []

    async def AppendAuditEvents(self, request, context):
        token = dict(context.invocation_metadata())["authorization"].removeprefix("Bearer ")
        self.deadlines.append(context.time_remaining())
        self.principals.append(await self.verifier.verify(token))
        self.requests.append(request)
        return history_pb2.AppendAuditEventsResponse(ids=[e.id for e in request.events])


async def test_history_sink_with_the_service_token(auth, engine, redis_url):
    """HistoryAuditSink against a fake HistoryService: auth's own service token (act="auth") that
    any verifier accepts, the event fields, a deadline."""
    verifier = TokenVerifier(AuthKeyProvider(auth.addr), redis_url=redis_url)
    history = FakeHistory(verifier)
    server = grpc.aio.server()
    history_pb2_grpc.add_HistoryServiceServicer_to_server(history, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        tokens = ServiceTokenSource(auth.server.service.keys.current, ttl_s=300, issuer=auth.settings.issuer,
                                    audience=auth.settings.audience, act="auth")
        sink = HistoryAuditSink(channel, tokens, timeout_s=2.5)
        _clear_outbox(engine)
        with engine.begin() as conn:
            audit.record(
                conn, audit.LOGIN, origin=Origin("192.0.2.1", "agent"), user_id=uuid.UUID(int=1),
                organization_id=uuid.UUID(int=2), target_type="session", target_id=uuid.UUID(int=3),
            )
        forwarder = AuditForwarder(engine, sink)
        assert await forwarder.forward_once() == 1
        assert await forwarder.forward_once() == 0
        (request,) = history.requests
        (event,) = request.events
        (row,) = events(engine)
        assert (event.id, event.action, event.client_ip, event.user_id, event.organization_id, event.target_id) == (
            str(row["id"]), "auth.login", "192.0.2.1", str(uuid.UUID(int=1)), str(uuid.UUID(int=2)), str(uuid.UUID(int=3)))
        assert event.target_type == "session" and json.loads(event.details_json) == {"user_agent": "agent"}
        assert abs(event.occurred_at.ToDatetime(tzinfo=UTC) - row["occurred_at"]).total_seconds() < 0.001
        principal = history.principals[0]
        assert (principal.acting_service, principal.user_id, principal.organization_id) == ("auth", "service:auth", "")
        assert principal.expires_at - time.time() <= 300
        # the deadline travels in whole milliseconds and is re-based on the server's clock: a few ms either way
        assert 2.0 < history.deadlines[0] <= 2.55

        first = await tokens.token()
        assert await tokens.token() == first  # cached
    finally:
        await channel.close()
        await server.stop(0)
        await verifier.close()


def test_auth_is_a_reserved_service_id():
    from hemovision_auth.settings import Settings

    with pytest.raises(ValueError, match="reserved"):
        Settings(service_credentials="auth:secret")


def test_housekeeping_deletes_only_what_no_longer_matters(engine):
    from hemovision_auth.housekeeping import prune_sync
    from hemovision_auth.settings import Settings

    _clear_outbox(engine)
    old, recent, pending = _record(engine, 3)
    tag = uuid.uuid4().hex[:6]
    with engine.begin() as conn:
        conn.execute(text("UPDATE auth.audit_outbox SET forwarded_at = now() - interval '8 days' WHERE id = :i"), {"i": old})
        conn.execute(text("UPDATE auth.audit_outbox SET forwarded_at = now() - interval '6 days' WHERE id = :i"), {"i": recent})
        conn.execute(text("UPDATE auth.audit_outbox SET occurred_at = now() - interval '30 days' WHERE id = :i"), {"i": pending})
        for name, last_failure, locked_until in (
            ("stale", "2 days", None), ("stale-locked", "2 days", "now() + interval '1 hour'"), ("fresh", "1 hour", None)
        ):
            conn.execute(text(
                "INSERT INTO auth.login_attempts (email, failures, last_failure_at, locked_until) VALUES "
                f"(:e, 1, now() - interval '{last_failure}', {locked_until or 'NULL'})"), {"e": f"{name}-{tag}@lab.example"})
    prune_sync(engine, Settings(audit_retention_s=7 * 24 * 3600, lockout_memory_s=24 * 3600))
    assert sorted(str(e["id"]) for e in events(engine)) == sorted([recent, pending])
    with engine.connect() as conn:
        left = {r.email.split("-" + tag)[0] for r in conn.execute(
            text("SELECT email FROM auth.login_attempts WHERE email LIKE :t"), {"t": f"%-{tag}@lab.example"})}
    assert left == {"stale-locked", "fresh"}
