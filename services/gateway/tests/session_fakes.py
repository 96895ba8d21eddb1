"""The fake auth peer (gateway_fakes.FakeAuth) with sign-in sessions, lockout and the request
origin it is sent: what the gateway's session routes, cookies and client-IP forwarding are tested
against. Behaves like auth's contract (proto/hemovision/auth/v1/auth.proto): a session is a
refresh-token family, refresh rotates the token (a spent one is refused), a locked account answers
RESOURCE_EXHAUSTED with trailing metadata `retry-after`."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from hemovision.auth.v1 import auth_pb2
from hemovision_contracts import origin_from_metadata

import gateway_fakes
from gateway_fakes import FakeAuth, caller


@dataclass
class FakeSession:
    id: str
    user_id: str
    refresh_token: str
    client_ip: str
    user_agent: str
    created_at: float = field(default_factory=time.time)
    last_used_at: float = field(default_factory=time.time)
    ended: bool = False


def _ts(seconds: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


class SessionAuth(FakeAuth):
    """FakeAuth plus sessions. State on the world: `sessions`, `token_session` (access token ->
    session id), `locked` (e-mail -> seconds left), `origins` ((rpc, client ip, user agent) per call)."""

    def __init__(self, world) -> None:
        super().__init__(world)
        world.sessions = getattr(world, "sessions", {})
        world.token_session = getattr(world, "token_session", {})
        world.locked = getattr(world, "locked", {})
        world.origins = getattr(world, "origins", [])

    def _seen(self, rpc: str, context) -> None:
        ip, ua = origin_from_metadata(context.invocation_metadata())
        self.w.origins.append((rpc, ip, ua))

    def _issue(self, s: FakeSession) -> auth_pb2.TokenPair:
        s.refresh_token = f"hvr_{uuid.uuid4().hex}"
        s.last_used_at = time.time()
        access = self.w.token_for(self.w.users[s.user_id])
        self.w.token_session[access] = s.id
        return auth_pb2.TokenPair(access_token=access, refresh_token=s.refresh_token, token_type="bearer",
                                  expires_in=900)

    @staticmethod
    def _raw_token(context) -> str:
        return dict(context.invocation_metadata()).get("authorization", "").removeprefix("Bearer ")

    async def Login(self, request, context):
        self._seen("Login", context)
        if request.email in self.w.locked:
            context.set_trailing_metadata((("retry-after", str(self.w.locked[request.email])),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many failed sign-ins; try again in {self.w.locked[request.email]} s")
        if getattr(self.w, "passwords", {}).get(request.email) != request.password:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong e-mail or password")
        u = next(u for u in self.w.users.values() if u.email == request.email)
        ip, ua = origin_from_metadata(context.invocation_metadata())
        s = FakeSession(id=str(uuid.uuid4()), user_id=u.id, refresh_token="", client_ip=ip, user_agent=ua)
        self.w.sessions[s.id] = s
        return self._issue(s)

    async def Refresh(self, request, context):
        self._seen("Refresh", context)
        for s in self.w.sessions.values():
            if not s.ended and s.refresh_token == request.refresh_token:
                return self._issue(s)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or spent refresh token")

    async def Logout(self, request, context):
        self._seen("Logout", context)
        await caller(self.w, context)
        self.w.calls.append("logout:" + request.refresh_token)
        for s in self.w.sessions.values():
            if request.refresh_token and s.refresh_token == request.refresh_token:
                s.ended = True
        return empty_pb2.Empty()

    async def GetMe(self, request, context):
        self._seen("GetMe", context)
        return await super().GetMe(request, context)

    async def ListSessions(self, request, context):
        self._seen("ListSessions", context)
        p = await caller(self.w, context)
        current = self.w.token_session.get(self._raw_token(context))
        mine = sorted((s for s in self.w.sessions.values() if s.user_id == p.user_id and not s.ended),
                      key=lambda s: -s.created_at)
        return auth_pb2.ListSessionsResponse(items=[
            auth_pb2.Session(id=s.id, created_at=_ts(s.created_at), last_used_at=_ts(s.last_used_at),
                             client_ip=s.client_ip, user_agent=s.user_agent, current=s.id == current)
            for s in mine])

    async def RevokeSession(self, request, context):
        self._seen("RevokeSession", context)
        p = await caller(self.w, context)
        s = self.w.sessions.get(request.session_id)
        if s is None or s.user_id != p.user_id or s.ended:
            await context.abort(grpc.StatusCode.NOT_FOUND, "session not found")
        s.ended = True
        return empty_pb2.Empty()

    async def SignOutEverywhere(self, request, context):
        self._seen("SignOutEverywhere", context)
        p = await caller(self.w, context)
        target = request.user_id or p.user_id
        if target != p.user_id:
            if p.role not in ("org_admin", "platform_admin"):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "needs org_admin or platform_admin")
            if self._same_org(p, target) is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        ended = 0
        for s in self.w.sessions.values():
            if s.user_id == target and not s.ended:
                s.ended = True
                ended += 1
        return auth_pb2.SignOutEverywhereResponse(sessions_ended=ended)

    async def UnlockUser(self, request, context):
        self._seen("UnlockUser", context)
        p = await caller(self.w, context)
        if p.role not in ("org_admin", "platform_admin"):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "needs org_admin or platform_admin")
        u = self._same_org(p, request.user_id)
        if u is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        self.w.locked.pop(u.email, None)
        u.ClearField("locked_until")
        return u

    async def ListUsers(self, request, context):
        reply = await super().ListUsers(request, context)
        for u in reply.users:
            if u.email in self.w.locked:
                u.locked_until.CopyFrom(_ts(time.time() + self.w.locked[u.email]))
        return reply


def install(monkeypatch) -> None:
    """Makes gateway_fakes.start_fakes serve SessionAuth as the auth peer."""
    monkeypatch.setattr(gateway_fakes, "FakeAuth", SessionAuth)
