"""TokenVerifier: signature, expiry, issuer, audience, type and Redis revocation."""

from __future__ import annotations

import logging
from typing import Any

import jwt
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hemovision_tokens.keys import KeyProvider
from hemovision_tokens.principal import ALGORITHM, AUDIENCE, ISSUER, ROLES, Principal, TokenError
from hemovision_tokens.revocation import jti_key, user_key

log = logging.getLogger(__name__)

_REQUIRED = ["exp", "iat", "sub", "jti", "iss", "aud"]


class TokenVerifier:
    """Verifies HemoVision access tokens.

    `redis_url=None` skips the revocation check (tests without Redis, tools); every
    service passes HV_REDIS_URL. A Redis outage fails closed with UNAVAILABLE.
    """

    def __init__(
        self,
        key_provider: KeyProvider,
        *,
        redis_url: str | None,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        leeway: float = 10,
        redis: Any = None,
    ) -> None:
        self.key_provider = key_provider
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._redis = redis
        self._own_redis = False
        if redis is None and redis_url:
            self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
            self._own_redis = True

    async def verify(self, token: str) -> Principal:
        if not token:
            raise TokenError("missing token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError("token uses an unsupported algorithm")
        kid = header.get("kid")
        if not kid or not isinstance(kid, str):
            raise TokenError("token has no key id")
        key = await self.key_provider.get_key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token is not meant for HemoVision (wrong audience)") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token has the wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("invalid token signature") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
        if claims.get("typ") != "access":
            raise TokenError("not an access token")
        role = claims.get("role")
        if role not in ROLES:
            raise TokenError("token carries an unknown role")
        act = claims.get("act")
        acting = act.get("sub") if isinstance(act, dict) else None
        principal = Principal(
            user_id=str(claims["sub"]),
            organization_id=str(claims.get("org") or ""),
            role=role,
            email=str(claims.get("email") or ""),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
            acting_service=str(acting) if acting else None,
            token=token,
            email_verified=bool(claims.get("ev", True)),
            issued_at=float(claims["iat"]),
        )
        if self._redis is not None:
            await self._check_revocation(principal)
        return principal

    async def _check_revocation(self, principal: Principal) -> None:
        try:
            revoked_jti, user_mark = await self._redis.mget(jti_key(principal.jti), user_key(principal.user_id))
        except (RedisError, OSError) as exc:
            log.warning("revocation store unreachable", extra={"error": type(exc).__name__})
            from hemovision_grpc_server import Unavailable

            raise Unavailable("cannot check token revocation right now; try again") from None
        if revoked_jti is not None:
            raise TokenError("token revoked")
        if user_mark is not None:
            try:
                mark = float(user_mark)
            except ValueError:
                mark = 0.0
            if principal.issued_at < mark:
                raise TokenError("token revoked")

    async def close(self) -> None:
        if self._own_redis and self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        close = getattr(self.key_provider, "close", None)
        if close is not None:
            await close()
