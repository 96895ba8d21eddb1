"""Domain objects the service layer returns (the servicer turns them into protobuf)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as the gateway saw it (hv-client-ip / hv-user-agent metadata);
    informational: for sessions and the audit log, never for authorization."""

    client_ip: str = ""
    user_agent: str = ""


NO_ORIGIN = Origin()


@dataclass(frozen=True)
class User:
    id: str
    email: str
    organization_id: str  # "" for platform users without an organization
    organization_name: str
    role: str
    active: bool
    email_verified: bool
    created_at: datetime
    locked_until: datetime | None = None  # sign-in locked until then (failed attempts); None: not locked

    @classmethod
    def from_row(cls, row) -> User:  # noqa: ANN001
        locked_until = getattr(row, "locked_until", None)
        if locked_until is not None and locked_until <= datetime.now(UTC):
            locked_until = None
        return cls(
            id=str(row.id),
            email=row.email,
            organization_id=str(row.organization_id) if row.organization_id else "",
            organization_name=row.organization_name or "",
            role=row.role,
            active=row.active,
            email_verified=row.email_verified,
            created_at=row.created_at,
            locked_until=locked_until,
        )


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    user_count: int
    created_at: datetime


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    secret: str  # only when just created
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row, secret: str = "") -> ApiKey:  # noqa: ANN001
        return cls(str(row.id), row.name, row.prefix, secret, row.created_at, row.last_used_at, row.revoked_at)


@dataclass(frozen=True)
class Invitation:
    id: str
    email: str
    role: str
    expires_at: datetime


@dataclass(frozen=True)
class Page:
    items: list
    next_cursor: str


@dataclass(frozen=True)
class Session:
    """A sign-in: one refresh-token family."""

    id: str
    created_at: datetime
    last_used_at: datetime
    client_ip: str
    user_agent: str
    current: bool
