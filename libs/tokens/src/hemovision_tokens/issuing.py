"""Signing access tokens: used by auth and by hemovision_testkit.tokens.TokenFactory, so both mint the same format."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hemovision_contracts import ROLES
from hemovision_tokens.principal import ALGORITHM, AUDIENCE, ISSUER


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    issued_at: float
    expires_at: float


def issue_access_token(
    private_key: Ed25519PrivateKey,
    kid: str,
    *,
    user_id: str,
    organization_id: str,
    role: str,
    email: str,
    ttl: float = 900,
    act: str | None = None,
    email_verified: bool = True,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    now: float | None = None,
) -> IssuedToken:
    """Signs an EdDSA access token with the claims docs/engineering.md defines.

    `iat` keeps full sub-second precision (a JSON float) so that a user revocation mark set in the same
    second as a new login does not reject the new token.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    issued = float(time.time() if now is None else now)
    expires = int(issued + ttl)
    jti = uuid.uuid4().hex
    claims: dict[str, object] = {
        "sub": user_id,
        "org": organization_id or "",
        "role": role,
        "email": email,
        "ev": bool(email_verified),
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": expires,
        "jti": jti,
        "typ": "access",
    }
    if act:
        claims["act"] = {"sub": act}
    token = jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"})
    return IssuedToken(token=token, jti=jti, issued_at=issued, expires_at=float(expires))
