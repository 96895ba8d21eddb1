"""TokenVerifier: signature, expiry, issuer, audience, type and Redis revocation."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import jwt
from redis.exceptions import MaxConnectionsError, RedisError

from hemovision_contracts import ROLES
from hemovision_tokens.keys import KeyProvider
from hemovision_tokens.principal import ALGORITHM, AUDIENCE, ISSUER, Principal, TokenError
from hemovision_tokens import redis_pool, revocation_proof
from hemovision_tokens.revocation import jti_key, user_key

log = logging.getLogger(__name__)

_REQUIRED = ["exp", "iat", "sub", "jti", "iss", "aud"]
# Tokens whose signature, issuer and audience were already checked, kept per process: every hop of
# one request (gateway, inference, preprocess, history) sees the same token again and again, and the
# signature check is the costliest part of verify(). Expiry and revocation are still checked on
# every call, and a hit is only honoured while the key provider returns the very same key object.
_VERIFIED_CACHE_SIZE = 4096


class TokenVerifier:
    """Verifies HemoVision access tokens.

    `redis_url=None` skips the revocation check (tests without Redis, tools); every
    service passes HV_REDIS_URL. A Redis outage fails closed with UNAVAILABLE; an exhausted
    connection pool (this process's own limit: `max_connections`, waited on for at most
    `pool_timeout_s`, redis_pool.py) answers RESOURCE_EXHAUSTED ("busy, retry"), never UNAVAILABLE.
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
        max_connections: int = redis_pool.DEFAULT_MAX_CONNECTIONS,
        pool_timeout_s: float = redis_pool.DEFAULT_POOL_TIMEOUT_S,
    ) -> None:
        self.key_provider = key_provider
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._redis = redis
        self._own_redis = False
        self._verified: OrderedDict[str, tuple[str, Any, dict[str, Any]]] = OrderedDict()
        if redis is None and redis_url:
            self._redis = redis_pool.connect(redis_url, max_connections=max_connections,
                                             pool_timeout_s=pool_timeout_s, socket_timeout=2.0,
                                             socket_connect_timeout=2.0)
            self._own_redis = True

    async def verify(self, token: str, *, revocation_proof: str | None = None) -> Principal:
        """`revocation_proof`: the calling service's proof that it checked this token's revocation
        a moment ago (revocation_proof.py); a valid one stands in for this service's own lookup."""
        if not token:
            raise TokenError("missing token")
        cached = self._verified.get(token)
        if cached is not None and await self._same_key(cached[0], cached[1]):
            self._verified.move_to_end(token)
            claims = cached[2]
            if time.time() > float(claims["exp"]) + self.leeway:
                self._verified.pop(token, None)
                raise TokenError("token expired")
        else:
            claims = await self._decode(token)
        return await self._principal(token, claims, revocation_proof)

    async def _same_key(self, kid: str, key: Any) -> bool:
        try:
            return await self.key_provider.get_key(kid) is key
        except TokenError:
            return False

    async def _decode(self, token: str) -> dict[str, Any]:
        """Full check: header, signature, expiry, issuer, audience, required claims."""
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
        self._verified[token] = (kid, key, claims)
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    async def _principal(self, token: str, claims: dict[str, Any], proof: str | None = None) -> Principal:
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
            role=str(role),
            email=str(claims.get("email") or ""),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
            acting_service=str(acting) if acting else None,
            token=token,
            email_verified=bool(claims.get("ev", True)),
            issued_at=float(claims["iat"]),
        )
        if self._redis is not None and not revocation_proof.PROOFS.accept(token, proof):
            await self._check_revocation(principal)
            revocation_proof.PROOFS.note_checked(token)
        return principal

    async def _check_revocation(self, principal: Principal) -> None:
        try:
            revoked_jti, user_mark = await self._redis.mget(jti_key(principal.jti), user_key(principal.user_id))
        except MaxConnectionsError as exc:
            # Our own pool's limit (every connection busy for the whole bounded wait), not Redis.
            log.warning("revocation lookup found no free Redis connection (this process is overloaded)",
                        extra={"error": str(exc)})
            from hemovision_grpc_server import ResourceExhausted

            raise ResourceExhausted("too many requests in flight here right now; try again") from None
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
