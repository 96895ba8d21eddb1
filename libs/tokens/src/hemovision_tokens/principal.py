"""The verified caller and the error a bad token raises."""

from __future__ import annotations

from dataclasses import dataclass

ISSUER = "hemovision-auth"
AUDIENCE = "hemovision"
ALGORITHM = "EdDSA"


class TokenError(Exception):
    """A token that must not be accepted; `.message` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, taken from a verified access token (never from the request body)."""

    user_id: str
    organization_id: str  # "" for platform roles without an organization
    role: str  # one of hemovision_contracts.ROLES
    email: str
    jti: str
    expires_at: float  # unix time
    acting_service: str | None  # the service id of an on-behalf-of token (`act.sub`), else None
    token: str  # the raw JWT, to forward to downstream services
    email_verified: bool = True  # the `ev` claim; False only when auth requires verification and it is pending
    issued_at: float = 0.0  # the `iat` claim

    def __repr__(self) -> str:  # never print the raw token in logs
        return (
            f"Principal(user_id={self.user_id!r}, organization_id={self.organization_id!r}, role={self.role!r}, "
            f"email={self.email!r}, jti={self.jti!r}, acting_service={self.acting_service!r})"
        )
