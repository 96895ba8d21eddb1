"""Accounts: users, tokens, invitations, API keys."""

from __future__ import annotations

from pydantic import Field

from hemovision_gateway.schemas.common import ResponseModel, role_name, timestamp


class User(ResponseModel):
    id: str = Field(examples=["1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"])
    email: str = Field(examples=["ana@lab.example"])
    organization: str = Field(examples=["Central Lab"], description="the organization's name")
    organization_id: str = Field(description='"" for platform roles without one')
    role: str = Field(examples=["org_admin"], description="lab_user, org_admin, ml_engineer or platform_admin")
    active: bool
    email_verified: bool
    created_at: str | None = Field(examples=["2026-11-22T14:00:00Z"])
    locked_until: str | None = Field(default=None, examples=[None],
                                     description="until when sign-in is locked after failed attempts; null: not locked "
                                                 "(an admin may lift it: POST /api/v1/admin/users/{id}/unlock)")

    @classmethod
    def from_pb(cls, u) -> User:
        return cls(id=u.id, email=u.email, organization=u.organization_name, organization_id=u.organization_id,
                   role=role_name(u.role), active=u.active, email_verified=u.email_verified,
                   created_at=timestamp(u.created_at),
                   locked_until=timestamp(u.locked_until) if u.HasField("locked_until") else None)


class UserPage(ResponseModel):
    items: list[User]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class TokenPair(ResponseModel):
    access_token: str = Field(examples=["eyJhbGciOiJFZERTQSIs..."])
    refresh_token: str | None = Field(examples=["r1.Zm9v..."],
                                      description="null for a browser session (`X-HV-Session: cookie`): the refresh "
                                                  "token is then in an HttpOnly cookie only")
    token_type: str = Field(examples=["bearer"])
    expires_in: int = Field(examples=[900], description="seconds the access token lives")

    @classmethod
    def from_pb(cls, t, *, refresh_in_cookie: bool = False) -> TokenPair:
        return cls(access_token=t.access_token, refresh_token=None if refresh_in_cookie else t.refresh_token,
                   token_type=t.token_type or "bearer", expires_in=t.expires_in)


class Session(ResponseModel):
    """A sign-in session (one refresh-token family)."""

    id: str = Field(examples=["5f0c2a7e-..."])
    created_at: str | None = Field(examples=["2026-12-07T09:00:00Z"], description="when it signed in")
    last_used_at: str | None = Field(description="when its refresh token was last used (or created_at)")
    client_ip: str = Field(examples=["203.0.113.7"], description="the client's IP at sign-in")
    user_agent: str = Field(examples=["Mozilla/5.0 ..."], description="the User-Agent at sign-in (truncated)")
    current: bool = Field(description="true for the session of the token making this call")

    @classmethod
    def from_pb(cls, s) -> Session:
        return cls(id=s.id, created_at=timestamp(s.created_at), last_used_at=timestamp(s.last_used_at),
                   client_ip=s.client_ip, user_agent=s.user_agent, current=s.current)


class SessionList(ResponseModel):
    items: list[Session] = Field(description="active sessions, newest first")


class SessionsEnded(ResponseModel):
    """What "sign out everywhere" did."""

    sessions_ended: int = Field(examples=[3], description="how many sessions were ended")


class Invitation(ResponseModel):
    id: str
    email: str = Field(examples=["colleague@lab.example"])
    role: str = Field(examples=["lab_user"])
    expires_at: str | None

    @classmethod
    def from_pb(cls, inv) -> Invitation:
        return cls(id=inv.id, email=inv.email, role=role_name(inv.role), expires_at=timestamp(inv.expires_at))


class ApiKey(ResponseModel):
    """An API key without its secret."""

    id: str
    name: str = Field(examples=["LIS integration"])
    prefix: str = Field(examples=["hv_3kf9"])
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None

    @classmethod
    def from_pb(cls, k) -> ApiKey:
        return cls(id=k.id, name=k.name, prefix=k.prefix, created_at=timestamp(k.created_at),
                   last_used_at=timestamp(k.last_used_at), revoked_at=timestamp(k.revoked_at))


class ApiKeyCreated(ApiKey):
    """A new API key: the secret is in this answer only."""

    secret: str = Field(examples=["hv_3kf9...shown-once"])

    @classmethod
    def from_pb(cls, k) -> ApiKeyCreated:
        return cls(**ApiKey.from_pb(k).__dict__, secret=k.secret)


class ApiKeyList(ResponseModel):
    items: list[ApiKey]
