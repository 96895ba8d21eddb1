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

    @classmethod
    def from_pb(cls, u) -> User:
        return cls(id=u.id, email=u.email, organization=u.organization_name, organization_id=u.organization_id,
                   role=role_name(u.role), active=u.active, email_verified=u.email_verified,
                   created_at=timestamp(u.created_at))


class UserPage(ResponseModel):
    items: list[User]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class TokenPair(ResponseModel):
    access_token: str = Field(examples=["eyJhbGciOiJFZERTQSIs..."])
    refresh_token: str = Field(examples=["r1.Zm9v..."])
    token_type: str = Field(examples=["bearer"])
    expires_in: int = Field(examples=[900], description="seconds the access token lives")

    @classmethod
    def from_pb(cls, t) -> TokenPair:
        return cls(access_token=t.access_token, refresh_token=t.refresh_token, token_type=t.token_type or "bearer",
                   expires_in=t.expires_in)


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
