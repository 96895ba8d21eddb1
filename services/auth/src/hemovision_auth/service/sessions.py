"""Sign-in sessions and the tokens auth issues: login, refresh-token families, logout,
on-behalf-of tokens for batch workers, the signing keys, and ending a user's sessions."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from hemovision_auth import audit, repository
from hemovision_auth.domain import NO_ORIGIN, AccessToken, Origin, Session, TokenPair
from hemovision_auth.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidCredentials,
    LockedOut,
    NotFound,
    Unauthenticated,
)
from hemovision_auth.keys import KeyStore, PublishedKey, SigningKey
from hemovision_auth.passwords import Passwords, sha256_hex
from hemovision_auth.settings import Settings
from hemovision_auth.service.lockout import LoginThrottle
from hemovision_auth.service.validation import parse_uuid, refuse_on_behalf_of
from hemovision_contracts import PLATFORM_ADMIN
from hemovision_tokens import IssuedToken, Principal, check_role, issue_access_token, revoke_jti, revoke_user_tokens

log = logging.getLogger(__name__)

REFRESH_PREFIX = "hvr_"


class SessionService:
    def __init__(
        self, settings: Settings, *, engine: Engine, redis: Any, keys: KeyStore, passwords: Passwords
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.keys = keys
        self.passwords = passwords
        self.throttle = LoginThrottle.from_settings(settings)
        self._service_credentials = settings.service_credential_map()

    # ---- issuing --------------------------------------------------------------------------------

    def sign(self, key: SigningKey, user_row: Any, *, ttl: int, act: str | None = None) -> IssuedToken:
        """An access token for `user_row` as the database has it now (role, organization, e-mail)."""
        return issue_access_token(
            key.private_key,
            key.kid,
            user_id=str(user_row.id),
            organization_id=str(user_row.organization_id) if user_row.organization_id else "",
            role=user_row.role,
            email=user_row.email,
            ttl=ttl,
            act=act,
            email_verified=bool(user_row.email_verified) or not self.settings.require_email_verification,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
        )

    def _open(self, conn: Connection, key: SigningKey, user_row: Any, family_id: uuid.UUID) -> TokenPair:
        """A new access + refresh token pair in refresh family `family_id` (one family per login)."""
        ttl = self.settings.access_token_ttl_s
        access = self.sign(key, user_row, ttl=ttl)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        repository.insert_refresh_token(
            conn,
            token_id=uuid.uuid4(),
            user_id=user_row.id,
            family_id=family_id,
            token_hash=sha256_hex(refresh),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl_s),
            access_jti=access.jti,
            access_expires_at=datetime.fromtimestamp(access.expires_at, UTC),
        )
        return TokenPair(access_token=access.token, refresh_token=refresh, expires_in=ttl)

    # ---- ending sessions ------------------------------------------------------------------------

    async def revoke_access_tokens(self, rows: list[Any]) -> None:
        """Revokes the still-alive access tokens (access_jti, access_expires_at) of refresh rows."""
        now = time.time()
        for row in rows:
            if row.access_jti and row.access_expires_at:
                await revoke_jti(self.redis, row.access_jti, row.access_expires_at.timestamp() - now)

    async def end_user_sessions(self, user_id: Any, *, refresh_tokens: bool) -> None:
        """Ends every access token of the user issued until now, and with `refresh_tokens` its
        refresh tokens too (password change); a role change keeps them, so the next refresh
        carries the new role."""
        if refresh_tokens:
            def tx() -> None:
                with self.engine.begin() as conn:
                    repository.revoke_user_refresh_tokens(conn, user_id=uuid.UUID(str(user_id)), at=datetime.now(UTC))

            await asyncio.to_thread(tx)
        await revoke_user_tokens(self.redis, str(user_id))

    # ---- sign in, refresh, sign out ---------------------------------------------------------------

    async def login(self, *, email: str, password: str, origin: Origin = NO_ORIGIN) -> TokenPair:
        """A new session for e-mail + password. Failures are counted per e-mail (LoginThrottle);
        while the address is locked even the right password is refused (LockedOut)."""
        email = (email or "").strip().lower()
        if not email or not password:
            raise InvalidArgument("e-mail and password are required")
        if len(email) > 320 or "\x00" in email:
            raise InvalidArgument("that is not a valid e-mail address")

        def find() -> tuple[Any, int]:
            with self.engine.begin() as conn:
                row = repository.get_user_by_email(conn, email=email)
                locked_for = self.throttle.locked_for(conn, email=email, now=datetime.now(UTC))
                if locked_for:
                    self._record_failure(conn, row, email, origin, reason="locked")
                return row, locked_for

        row, locked_for = await asyncio.to_thread(find)
        if locked_for:
            raise LockedOut(locked_for)
        ok = await self.passwords.verify_async(row.password_hash if row else None, password)
        if row is None or not ok:
            def fail() -> int:
                with self.engine.begin() as conn:
                    failure = self.throttle.record_failure(conn, email=email, now=datetime.now(UTC))
                    self._record_failure(
                        conn, row, email, origin, reason="unknown_email" if row is None else "wrong_password",
                        failures=failure.failures,
                    )
                    if failure.locked_for_s:
                        audit.record(
                            conn, audit.LOCKOUT, origin=origin,
                            organization_id=row.organization_id if row else None,
                            target_type="user" if row else "", target_id=row.id if row else None,
                            details={"email": email, "locked_for_s": failure.locked_for_s, "lockouts": failure.lockouts},
                        )
                    return failure.locked_for_s

            locked_for = await asyncio.to_thread(fail)
            if locked_for:
                log.warning("sign-in locked after failed attempts", extra={"locked_for_s": locked_for})
                raise LockedOut(locked_for)
            raise InvalidCredentials()
        if not row.active:
            def inactive() -> None:
                with self.engine.begin() as conn:
                    self._record_failure(conn, row, email, origin, reason="deactivated")

            await asyncio.to_thread(inactive)
            raise Unauthenticated("this account is deactivated")
        key = await self.keys.current()

        def tx() -> TokenPair:
            with self.engine.begin() as conn:
                now = datetime.now(UTC)
                # locked meanwhile (a concurrent guess reached the threshold): refused all the same
                locked_for = self.throttle.locked_for(conn, email=email, now=now, for_update=True)
                if locked_for:
                    raise LockedOut(locked_for)
                repository.clear_login_attempts(conn, email=email)
                if self.passwords.needs_rehash(row.password_hash):
                    repository.update_user(conn, user_id=row.id, password_hash=self.passwords.hash(password))
                family_id = uuid.uuid4()
                repository.insert_session(
                    conn, session_id=family_id, user_id=row.id, client_ip=origin.client_ip,
                    user_agent=origin.user_agent, at=now,
                )
                audit.record(
                    conn, audit.LOGIN, origin=origin, user_id=row.id, organization_id=row.organization_id,
                    target_type="session", target_id=family_id,
                )
                return self._open(conn, key, row, family_id)

        return await asyncio.to_thread(tx)

    @staticmethod
    def _record_failure(
        conn: Connection, row: Any, email: str, origin: Origin, *, reason: str, failures: int | None = None
    ) -> None:
        """auth.login_failed: the address tried (never the password), on the account's organization
        if the address has one."""
        details: dict[str, Any] = {"email": email, "reason": reason}
        if failures is not None:
            details["failures"] = failures
        audit.record(
            conn, audit.LOGIN_FAILED, origin=origin, organization_id=row.organization_id if row else None,
            target_type="user" if row else "", target_id=row.id if row else None, details=details,
        )

    async def refresh(self, *, refresh_token: str) -> TokenPair:
        """A new pair for a refresh token, which is used up; presenting a used one again ends its family."""
        if not refresh_token:
            raise InvalidArgument("refresh_token is required")
        key = await self.keys.current()
        token_hash = sha256_hex(refresh_token)

        def tx() -> tuple[str, Any]:
            with self.engine.begin() as conn:
                row = repository.get_refresh_token_for_update(conn, token_hash=token_hash)
                now = datetime.now(UTC)
                if row is None:
                    return "invalid", None
                if row.used_at is not None or row.revoked_at is not None:
                    kind = "reuse" if row.used_at is not None else "revoked"
                    if kind == "reuse":
                        owner = repository.get_user(conn, user_id=row.user_id)
                        audit.record(
                            conn, audit.REFRESH_REUSE, user_id=row.user_id,
                            organization_id=owner.organization_id if owner else None,
                            target_type="session", target_id=row.family_id,
                        )
                    return kind, repository.revoke_refresh_family(conn, family_id=row.family_id, at=now)
                if row.expires_at <= now:
                    return "expired", None
                user = repository.get_user(conn, user_id=row.user_id)
                if user is None or not user.active:
                    return "inactive", repository.revoke_refresh_family(conn, family_id=row.family_id, at=now)
                repository.mark_refresh_token_used(conn, token_id=row.id, at=now)
                repository.touch_session(conn, session_id=row.family_id, at=now)
                return "ok", self._open(conn, key, user, row.family_id)

        outcome, value = await asyncio.to_thread(tx)
        if outcome == "ok":
            return value
        if outcome == "reuse":
            await self.revoke_access_tokens(value)
            log.warning("refresh token reuse detected; family revoked")
            raise Unauthenticated("refresh token was already used; the session has been revoked, sign in again")
        if outcome == "revoked":
            await self.revoke_access_tokens(value)
            raise Unauthenticated("refresh token revoked")
        if outcome == "expired":
            raise Unauthenticated("refresh token expired")
        if outcome == "inactive":
            await self.revoke_access_tokens(value)
            raise Unauthenticated("this account is deactivated")
        raise Unauthenticated("invalid refresh token")

    async def logout(self, principal: Principal, *, refresh_token: str = "", origin: Origin = NO_ORIGIN) -> None:
        """Ends the caller's access token, the given refresh token's family and the family the
        access token came from."""
        await revoke_jti(self.redis, principal.jti, principal.expires_at - time.time())
        user_id = uuid.UUID(principal.user_id)

        def tx() -> list[Any]:
            revoked: list[Any] = []
            with self.engine.begin() as conn:
                families = set()
                if refresh_token:
                    row = repository.get_refresh_token_for_update(conn, token_hash=sha256_hex(refresh_token))
                    if row is not None and row.user_id == user_id:
                        families.add(row.family_id)
                row = repository.get_refresh_token_by_access_jti(conn, access_jti=principal.jti)
                if row is not None and row.user_id == user_id:
                    families.add(row.family_id)
                for family in families:
                    revoked += repository.revoke_refresh_family(conn, family_id=family, at=datetime.now(UTC))
                ended = sorted(str(f) for f in families)
                audit.record(
                    conn, audit.LOGOUT, origin=origin, actor=principal, target_type="session",
                    target_id=ended[0] if len(ended) == 1 else "", details={"sessions": ended},
                )
            return revoked

        await self.revoke_access_tokens(await asyncio.to_thread(tx))

    # ---- sessions ---------------------------------------------------------------------------------------

    def current_family(self, conn: Connection, principal: Principal) -> uuid.UUID | None:
        """The refresh family the caller's access token was issued with (None: an API-key or
        on-behalf-of token)."""
        row = repository.get_refresh_token_by_access_jti(conn, access_jti=principal.jti)
        return row.family_id if row is not None and str(row.user_id) == principal.user_id else None

    async def list_sessions(self, principal: Principal) -> list[Session]:
        """The caller's live sessions, newest first; `current` marks the one of the calling token."""
        user_id = uuid.UUID(principal.user_id)

        def q() -> tuple[list[Any], uuid.UUID | None]:
            with self.engine.connect() as conn:
                rows = repository.list_live_sessions(conn, user_id=user_id, now=datetime.now(UTC))
                return rows, self.current_family(conn, principal)

        rows, current = await asyncio.to_thread(q)
        return [
            Session(str(r.id), r.created_at, r.last_used_at, r.client_ip, r.user_agent, r.id == current) for r in rows
        ]

    async def revoke_session(self, principal: Principal, *, session_id: str, origin: Origin = NO_ORIGIN) -> None:
        """Ends one of the caller's own sessions: its refresh family and the access tokens it issued."""
        refuse_on_behalf_of(principal, "end sessions")
        family = parse_uuid(session_id, "session_id")
        user_id = uuid.UUID(principal.user_id)

        def tx() -> list[Any]:
            with self.engine.begin() as conn:
                now = datetime.now(UTC)
                if repository.get_live_session(conn, session_id=family, user_id=user_id, now=now) is None:
                    raise NotFound("session not found")
                revoked = repository.revoke_refresh_family(conn, family_id=family, at=now)
                audit.record(conn, audit.SESSION_REVOKE, origin=origin, actor=principal, target_type="session",
                             target_id=family)
                return revoked

        await self.revoke_access_tokens(await asyncio.to_thread(tx))

    # ---- service credentials ------------------------------------------------------------------------

    async def issue_on_behalf_of(
        self, *, service_id: str, service_secret: str, user_id: str, purpose: str
    ) -> AccessToken:
        """A short token for `user_id` with `act.sub = service_id`, for a batch worker that holds
        a service credential."""
        expected = self._service_credentials.get(service_id or "")
        # compare_digest on equal-length digests so the secret's length does not leak either
        if expected is None or not hmac.compare_digest(sha256_hex(expected), sha256_hex(service_secret or "")):
            raise Unauthenticated("invalid service credentials")
        target = parse_uuid(user_id, "user_id")
        purpose = (purpose or "").strip()
        if not purpose:
            raise InvalidArgument("purpose is required (it is audited)")
        key = await self.keys.current()
        ttl = self.settings.obo_token_ttl_s

        def load() -> Any:
            with self.engine.connect() as conn:
                return repository.get_user(conn, user_id=target)

        row = await asyncio.to_thread(load)
        if row is None:
            raise NotFound("user not found")
        if not row.active:
            raise FailedPrecondition("the user is deactivated")
        issued = self.sign(key, row, ttl=ttl, act=service_id)
        log.info(
            "on-behalf-of token issued",
            extra={"service_id": service_id, "user_id": user_id, "purpose": purpose[:200], "jti": issued.jti},
        )
        return AccessToken(issued.token, ttl)

    # ---- signing keys ---------------------------------------------------------------------------------

    async def public_keys(self) -> list[PublishedKey]:
        return await self.keys.published()

    async def rotate_signing_key(self, principal: Principal) -> PublishedKey:
        check_role(principal, (PLATFORM_ADMIN,))
        refuse_on_behalf_of(principal, "rotate signing keys")
        key = await asyncio.to_thread(self.keys.rotate_sync)
        log.info("signing key rotated", extra={"kid": key.kid, "by": principal.user_id})
        return key
