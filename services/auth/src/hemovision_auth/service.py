"""The auth domain: accounts, sessions, keys, invitations, e-mail flows. Knows nothing of gRPC.

Database work runs in worker threads (sync SQLAlchemy, argon2); Redis and mail are awaited.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from hemovision_auth import repository
from hemovision_auth.domain import AccessToken, ApiKey, Invitation, Organization, Page, TokenPair, User
from hemovision_auth.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from hemovision_auth.keys import KeyStore, PublishedKey, SigningKey
from hemovision_auth.mailer import Mail, Mailer, invitation_mail, reset_mail, verification_mail
from hemovision_auth.passwords import Passwords
from hemovision_auth.settings import Settings
from hemovision_tokens import (
    LAB_USER,
    ML_ENGINEER,
    ORG_ADMIN,
    PLATFORM_ADMIN,
    ROLES,
    Principal,
    issue_access_token,
    revoke_jti,
    revoke_user_tokens,
)

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
ORG_ROLES = (LAB_USER, ORG_ADMIN)
PLATFORM_ROLES = (ML_ENGINEER, PLATFORM_ADMIN)
REFRESH_PREFIX = "hvr_"
API_KEY_PREFIX = "hv_"
MAX_PAGE = 200
DEFAULT_PAGE = 50


def _now() -> datetime:
    return datetime.now(timezone.utc)


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{what} must be a UUID") from None


def _encode_cursor(created_at: datetime, item_id: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, item_id = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(item_id)
    except (ValueError, TypeError):
        raise InvalidArgument("invalid page cursor") from None


def _page_limit(limit: int) -> int:
    if limit == 0:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(f"page limit must be between 1 and {MAX_PAGE}")
    return limit


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not email:
        raise InvalidArgument("e-mail address is required")
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidArgument(f"'{email[:80]}' is not a valid e-mail address")
    return email


class AuthService:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        redis: Any,
        mailer: Mailer,
        keys: KeyStore,
        passwords: Passwords,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.mailer = mailer
        self.keys = keys
        self.passwords = passwords
        self._service_credentials = settings.service_credential_map()

    # ---- helpers --------------------------------------------------------------------------------

    def _check_password(self, password: str, field: str = "password") -> None:
        if not password:
            raise InvalidArgument(f"{field} is required")
        if len(password) < self.settings.password_min_length:
            raise InvalidArgument(f"{field} must be at least {self.settings.password_min_length} characters long")
        if len(password) > 256:
            raise InvalidArgument(f"{field} must be at most 256 characters long")

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.passwords.hash, password)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.passwords.verify, password_hash, password)

    def _link(self, path: str, token: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/{path}?token={quote(token)}"

    async def _send(self, mail: Mail) -> None:
        """Best effort: an unreachable mail server must not fail the request that triggered it."""
        try:
            await self.mailer.send(mail)
        except Exception:  # noqa: BLE001
            log.exception("could not send mail", extra={"to": mail.to, "subject": mail.subject})

    def _email_verified_claim(self, user_row: Any) -> bool:
        return bool(user_row.email_verified) or not self.settings.require_email_verification

    def _sign(self, key: SigningKey, user_row: Any, *, ttl: int, act: str | None = None):
        return issue_access_token(
            key.private_key,
            key.kid,
            user_id=str(user_row.id),
            organization_id=str(user_row.organization_id) if user_row.organization_id else "",
            role=user_row.role,
            email=user_row.email,
            ttl=ttl,
            act=act,
            email_verified=self._email_verified_claim(user_row),
            issuer=self.settings.issuer,
            audience=self.settings.audience,
        )

    def _new_refresh(self, conn, key: SigningKey, user_row: Any, family_id: uuid.UUID) -> TokenPair:  # noqa: ANN001
        ttl = self.settings.access_token_ttl_s
        access = self._sign(key, user_row, ttl=ttl)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        repository.insert_refresh_token(
            conn,
            token_id=uuid.uuid4(),
            user_id=user_row.id,
            family_id=family_id,
            token_hash=sha256_hex(refresh),
            expires_at=_now() + timedelta(seconds=self.settings.refresh_token_ttl_s),
            access_jti=access.jti,
            access_expires_at=datetime.fromtimestamp(access.expires_at, timezone.utc),
        )
        return TokenPair(access_token=access.token, refresh_token=refresh, expires_in=ttl)

    def _new_email_token(self, conn, *, user_id: uuid.UUID, purpose: str, email: str, ttl: int) -> str:  # noqa: ANN001
        token = secrets.token_urlsafe(32)
        repository.insert_email_token(
            conn,
            token_id=uuid.uuid4(),
            user_id=user_id,
            purpose=purpose,
            email=email,
            token_hash=sha256_hex(token),
            expires_at=_now() + timedelta(seconds=ttl),
        )
        return token

    async def _revoke_jtis(self, rows: list[Any]) -> None:
        now = time.time()
        for row in rows:
            if row.access_jti and row.access_expires_at:
                await revoke_jti(self.redis, row.access_jti, row.access_expires_at.timestamp() - now)

    async def _revoke_user(self, user_id: Any, *, refresh_tokens: bool) -> None:
        if refresh_tokens:
            def tx() -> None:
                with self.engine.begin() as conn:
                    repository.revoke_user_refresh_tokens(conn, user_id=uuid.UUID(str(user_id)), at=_now())

            await asyncio.to_thread(tx)
        await revoke_user_tokens(self.redis, str(user_id))

    @staticmethod
    def _no_obo(principal: Principal, action: str) -> None:
        if principal.acting_service:
            raise PermissionDenied(f"an on-behalf-of token cannot {action}")

    def _load_user(self, user_id: uuid.UUID) -> Any:
        with self.engine.connect() as conn:
            return repository.get_user(conn, user_id=user_id)

    # ---- registration and sessions ----------------------------------------------------------------

    async def register(self, *, email: str, password: str, organization_name: str) -> User:
        email = normalize_email(email)
        self._check_password(password)
        name = " ".join((organization_name or "").split())
        if not name:
            raise InvalidArgument("organization name is required")
        if not 2 <= len(name) <= 200:
            raise InvalidArgument("organization name must be 2 to 200 characters long")
        password_hash = await self._hash(password)
        user_id, org_id = uuid.uuid4(), uuid.uuid4()

        def tx() -> tuple[Any, str]:
            with self.engine.begin() as conn:
                if repository.email_taken(conn, email=email):
                    raise AlreadyExists("an account with this e-mail address already exists")
                if repository.organization_name_taken(conn, name=name):
                    raise AlreadyExists(f"an organization named '{name}' already exists")
                repository.insert_organization(conn, org_id=org_id, name=name)
                repository.insert_user(
                    conn, user_id=user_id, email=email, password_hash=password_hash, organization_id=org_id, role=ORG_ADMIN
                )
                token = self._new_email_token(
                    conn, user_id=user_id, purpose="verify", email=email, ttl=self.settings.email_verification_ttl_s
                )
                return repository.get_user(conn, user_id=user_id), token

        try:
            row, token = await asyncio.to_thread(tx)
        except IntegrityError:  # a concurrent registration won the race
            raise AlreadyExists("an account with this e-mail address or organization name already exists") from None
        log.info("registered", extra={"user_id": str(user_id), "organization_id": str(org_id)})
        await self._send(verification_mail(to=email, link=self._link("verify-email", token)))
        return User.from_row(row)

    async def login(self, *, email: str, password: str) -> TokenPair:
        email = (email or "").strip().lower()
        if not email or not password:
            raise InvalidArgument("e-mail and password are required")

        def find() -> Any:
            with self.engine.connect() as conn:
                return repository.get_user_by_email(conn, email=email)

        row = await asyncio.to_thread(find)
        ok = await self._verify(row.password_hash if row else None, password)
        if row is None or not ok:
            raise InvalidCredentials()
        if not row.active:
            raise Unauthenticated("this account is deactivated")
        key = await self.keys.current()

        def tx() -> TokenPair:
            with self.engine.begin() as conn:
                if self.passwords.needs_rehash(row.password_hash):
                    repository.update_user(conn, user_id=row.id, password_hash=self.passwords.hash(password))
                return self._new_refresh(conn, key, row, uuid.uuid4())

        return await asyncio.to_thread(tx)

    async def refresh(self, *, refresh_token: str) -> TokenPair:
        if not refresh_token:
            raise InvalidArgument("refresh_token is required")
        key = await self.keys.current()
        token_hash = sha256_hex(refresh_token)

        def tx() -> tuple[str, Any]:
            with self.engine.begin() as conn:
                row = repository.get_refresh_token_for_update(conn, token_hash=token_hash)
                now = _now()
                if row is None:
                    return "invalid", None
                if row.used_at is not None or row.revoked_at is not None:
                    kind = "reuse" if row.used_at is not None else "revoked"
                    return kind, repository.revoke_refresh_family(conn, family_id=row.family_id, at=now)
                if row.expires_at <= now:
                    return "expired", None
                user = repository.get_user(conn, user_id=row.user_id)
                if user is None or not user.active:
                    return "inactive", repository.revoke_refresh_family(conn, family_id=row.family_id, at=now)
                repository.mark_refresh_token_used(conn, token_id=row.id, at=now)
                return "ok", self._new_refresh(conn, key, user, row.family_id)

        outcome, value = await asyncio.to_thread(tx)
        if outcome == "ok":
            return value
        if outcome == "reuse":
            await self._revoke_jtis(value)
            log.warning("refresh token reuse detected; family revoked")
            raise Unauthenticated("refresh token was already used; the session has been revoked, sign in again")
        if outcome == "revoked":
            await self._revoke_jtis(value)
            raise Unauthenticated("refresh token revoked")
        if outcome == "expired":
            raise Unauthenticated("refresh token expired")
        if outcome == "inactive":
            await self._revoke_jtis(value)
            raise Unauthenticated("this account is deactivated")
        raise Unauthenticated("invalid refresh token")

    async def logout(self, principal: Principal, *, refresh_token: str = "") -> None:
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
                    revoked += repository.revoke_refresh_family(conn, family_id=family, at=_now())
            return revoked

        await self._revoke_jtis(await asyncio.to_thread(tx))

    # ---- keys ---------------------------------------------------------------------------------------

    async def public_keys(self) -> list[PublishedKey]:
        return await self.keys.published()

    async def rotate_signing_key(self, principal: Principal) -> PublishedKey:
        self._require(principal, PLATFORM_ADMIN)
        self._no_obo(principal, "rotate signing keys")
        key = await asyncio.to_thread(self.keys.rotate_sync)
        log.info("signing key rotated", extra={"kid": key.kid, "by": principal.user_id})
        return key

    # ---- users ----------------------------------------------------------------------------------------

    @staticmethod
    def _require(principal: Principal, *roles: str) -> None:
        if principal.role not in roles:
            raise PermissionDenied(f"this action needs the role {' or '.join(roles)}")

    async def get_me(self, principal: Principal) -> User:
        row = await asyncio.to_thread(self._load_user, uuid.UUID(principal.user_id))
        if row is None:
            raise NotFound("user not found")
        return User.from_row(row)

    def _scoped_target(self, conn, principal: Principal, user_id: uuid.UUID, *, for_update: bool = False) -> Any:  # noqa: ANN001
        """The target user as the caller may see it: platform_admin any, org_admin its organization."""
        if principal.role == PLATFORM_ADMIN:
            row = repository.get_user(conn, user_id=user_id, for_update=for_update)
        elif principal.role == ORG_ADMIN and principal.organization_id:
            row = repository.get_user(
                conn, user_id=user_id, organization_id=uuid.UUID(principal.organization_id), for_update=for_update
            )
        else:
            raise PermissionDenied("this action needs the role org_admin or platform_admin")
        if row is None:
            raise NotFound("user not found")
        return row

    async def get_user(self, principal: Principal, *, user_id: str) -> User:
        target = _uuid(user_id, "user_id")
        if str(target) == principal.user_id:
            return await self.get_me(principal)

        def q() -> Any:
            with self.engine.connect() as conn:
                return self._scoped_target(conn, principal, target)

        return User.from_row(await asyncio.to_thread(q))

    async def list_users(self, principal: Principal, *, limit: int, cursor: str) -> Page:
        self._require(principal, ORG_ADMIN, PLATFORM_ADMIN)
        limit = _page_limit(limit)
        after = _decode_cursor(cursor)
        org = None
        if principal.role == ORG_ADMIN:
            if not principal.organization_id:
                return Page([], "")
            org = uuid.UUID(principal.organization_id)

        def q() -> list[Any]:
            with self.engine.connect() as conn:
                return repository.list_users(conn, organization_id=org, limit=limit + 1, after=after)

        rows = await asyncio.to_thread(q)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id) if more else ""
        return Page([User.from_row(r) for r in rows], next_cursor)

    def _check_manageable(self, principal: Principal, target: Any, what: str) -> None:
        if str(target.id) == principal.user_id:
            raise FailedPrecondition(f"you cannot {what} your own account")
        if principal.role == ORG_ADMIN and target.role not in ORG_ROLES:
            raise PermissionDenied("only a platform_admin can manage platform users")

    async def set_user_role(self, principal: Principal, *, user_id: str, role: str) -> User:
        target_id = _uuid(user_id, "user_id")
        if role not in ROLES:
            raise InvalidArgument("role must be one of lab_user, org_admin, ml_engineer, platform_admin")
        self._require(principal, ORG_ADMIN, PLATFORM_ADMIN)
        if principal.role == ORG_ADMIN and role not in ORG_ROLES:
            raise PermissionDenied("only a platform_admin can grant ml_engineer or platform_admin")

        def tx() -> Any:
            with self.engine.begin() as conn:
                target = self._scoped_target(conn, principal, target_id, for_update=True)
                self._check_manageable(principal, target, "change the role of")
                if role in ORG_ROLES and target.organization_id is None:
                    raise FailedPrecondition("a user without an organization can only hold a platform role")
                repository.update_user(conn, user_id=target_id, role=role)
                return repository.get_user(conn, user_id=target_id)

        row = await asyncio.to_thread(tx)
        # Access tokens carry the role: end the old ones (refresh tokens stay valid and pick up the new role).
        await self._revoke_user(target_id, refresh_tokens=False)
        log.info("role changed", extra={"user_id": user_id, "role": role, "by": principal.user_id})
        return User.from_row(row)

    async def set_user_active(self, principal: Principal, *, user_id: str, active: bool) -> User:
        target_id = _uuid(user_id, "user_id")

        def tx() -> Any:
            with self.engine.begin() as conn:
                target = self._scoped_target(conn, principal, target_id, for_update=True)
                self._check_manageable(principal, target, "deactivate" if not active else "reactivate")
                repository.update_user(conn, user_id=target_id, active=active)
                if not active:
                    repository.revoke_user_refresh_tokens(conn, user_id=target_id, at=_now())
                return repository.get_user(conn, user_id=target_id)

        row = await asyncio.to_thread(tx)
        if not active:
            await revoke_user_tokens(self.redis, str(target_id))
        log.info("user active changed", extra={"user_id": user_id, "active": active, "by": principal.user_id})
        return User.from_row(row)

    async def delete_user(self, principal: Principal, *, user_id: str) -> None:
        target_id = _uuid(user_id, "user_id")

        def tx() -> None:
            with self.engine.begin() as conn:
                target = self._scoped_target(conn, principal, target_id, for_update=True)
                self._check_manageable(principal, target, "delete")
                repository.delete_user(conn, user_id=target_id)

        await asyncio.to_thread(tx)
        await revoke_user_tokens(self.redis, str(target_id))
        log.info("user deleted", extra={"user_id": user_id, "by": principal.user_id})

    async def change_password(self, principal: Principal, *, current_password: str, new_password: str) -> None:
        self._no_obo(principal, "change a password")
        if not current_password:
            raise InvalidArgument("current_password is required")
        self._check_password(new_password, "new password")
        user_id = uuid.UUID(principal.user_id)
        row = await asyncio.to_thread(self._load_user, user_id)
        if row is None:
            raise NotFound("user not found")
        if not await self._verify(row.password_hash, current_password):
            raise PermissionDenied("the current password is incorrect")
        new_hash = await self._hash(new_password)

        def tx() -> None:
            with self.engine.begin() as conn:
                repository.update_user(conn, user_id=user_id, password_hash=new_hash, password_changed_at=_now())

        await asyncio.to_thread(tx)
        await self._revoke_user(user_id, refresh_tokens=True)

    # ---- invitations -----------------------------------------------------------------------------------

    async def invite_user(self, principal: Principal, *, email: str, role: str) -> Invitation:
        self._require(principal, ORG_ADMIN, PLATFORM_ADMIN)
        self._no_obo(principal, "invite users")
        if not principal.organization_id:
            raise FailedPrecondition("you have no organization to invite into")
        email = normalize_email(email)
        role = role or LAB_USER
        if role not in ORG_ROLES:
            raise InvalidArgument("an invitation grants lab_user or org_admin")
        org_id = uuid.UUID(principal.organization_id)
        token = secrets.token_urlsafe(32)
        invitation_id = uuid.uuid4()
        expires_at = _now() + timedelta(seconds=self.settings.invitation_ttl_s)

        def tx() -> Any:
            with self.engine.begin() as conn:
                if repository.email_taken(conn, email=email):
                    raise AlreadyExists("a user with this e-mail address already exists")
                org = repository.get_organization(conn, org_id=org_id)
                if org is None:
                    raise NotFound("organization not found")
                repository.insert_invitation(
                    conn,
                    invitation_id=invitation_id,
                    organization_id=org_id,
                    email=email,
                    role=role,
                    token_hash=sha256_hex(token),
                    invited_by=uuid.UUID(principal.user_id),
                    expires_at=expires_at,
                )
                return org

        org = await asyncio.to_thread(tx)
        await self._send(
            invitation_mail(
                to=email,
                link=self._link("accept-invite", token),
                organization=org.name,
                role=role,
                inviter=principal.email or "A colleague",
            )
        )
        log.info("invited", extra={"invitation_id": str(invitation_id), "by": principal.user_id})
        return Invitation(str(invitation_id), email, role, expires_at)

    async def accept_invitation(self, *, token: str, password: str) -> User:
        if not token:
            raise InvalidArgument("token is required")
        self._check_password(password)
        password_hash = await self._hash(password)

        def tx() -> Any:
            with self.engine.begin() as conn:
                inv = repository.get_invitation_for_update(conn, token_hash=sha256_hex(token))
                if inv is None or inv.accepted_at is not None or inv.expires_at <= _now():
                    raise InvalidArgument("this invitation link is invalid or has expired")
                if repository.email_taken(conn, email=inv.email):
                    raise AlreadyExists("a user with this e-mail address already exists")
                user_id = uuid.uuid4()
                repository.insert_user(
                    conn,
                    user_id=user_id,
                    email=inv.email,
                    password_hash=password_hash,
                    organization_id=inv.organization_id,
                    role=inv.role,
                    email_verified=True,  # the link arrived in that mailbox
                )
                repository.mark_invitation_accepted(conn, invitation_id=inv.id, at=_now())
                return repository.get_user(conn, user_id=user_id)

        return User.from_row(await asyncio.to_thread(tx))

    # ---- e-mail verification and password reset ----------------------------------------------------------

    async def request_email_verification(self, principal: Principal) -> None:
        user_id = uuid.UUID(principal.user_id)

        def tx() -> tuple[Any, str | None]:
            with self.engine.begin() as conn:
                row = repository.get_user(conn, user_id=user_id)
                if row is None:
                    raise NotFound("user not found")
                if row.email_verified:
                    return row, None
                return row, self._new_email_token(
                    conn, user_id=user_id, purpose="verify", email=row.email, ttl=self.settings.email_verification_ttl_s
                )

        row, token = await asyncio.to_thread(tx)
        if token:
            await self._send(verification_mail(to=row.email, link=self._link("verify-email", token)))

    async def verify_email(self, *, token: str) -> User:
        if not token:
            raise InvalidArgument("token is required")

        def tx() -> Any:
            with self.engine.begin() as conn:
                row = repository.get_email_token_for_update(conn, token_hash=sha256_hex(token), purpose="verify")
                if row is None or row.used_at is not None or row.expires_at <= _now():
                    raise InvalidArgument("this verification link is invalid or has expired")
                user = repository.get_user(conn, user_id=row.user_id)
                if user is None or user.email != row.email:
                    raise InvalidArgument("this verification link is invalid or has expired")
                repository.update_user(conn, user_id=row.user_id, email_verified=True)
                repository.use_email_tokens(conn, user_id=row.user_id, purpose="verify", at=_now())
                return repository.get_user(conn, user_id=row.user_id)

        return User.from_row(await asyncio.to_thread(tx))

    async def request_password_reset(self, *, email: str) -> None:
        email = normalize_email(email)

        def tx() -> str | None:
            with self.engine.begin() as conn:
                row = repository.get_user_by_email(conn, email=email)
                if row is None or not row.active:
                    return None
                return self._new_email_token(
                    conn, user_id=row.id, purpose="reset", email=email, ttl=self.settings.password_reset_ttl_s
                )

        token = await asyncio.to_thread(tx)
        if token:
            await self._send(
                reset_mail(
                    to=email,
                    link=self._link("reset-password", token),
                    ttl_minutes=max(1, self.settings.password_reset_ttl_s // 60),
                )
            )

    async def reset_password(self, *, token: str, new_password: str) -> None:
        if not token:
            raise InvalidArgument("token is required")
        self._check_password(new_password, "new password")
        new_hash = await self._hash(new_password)

        def tx() -> uuid.UUID:
            with self.engine.begin() as conn:
                row = repository.get_email_token_for_update(conn, token_hash=sha256_hex(token), purpose="reset")
                if row is None or row.used_at is not None or row.expires_at <= _now():
                    raise InvalidArgument("this password reset link is invalid or has expired")
                user = repository.get_user(conn, user_id=row.user_id)
                if user is None or not user.active or user.email != row.email:
                    raise InvalidArgument("this password reset link is invalid or has expired")
                repository.update_user(
                    conn, user_id=row.user_id, password_hash=new_hash, password_changed_at=_now(), email_verified=True
                )
                repository.use_email_tokens(conn, user_id=row.user_id, purpose="reset", at=_now())
                return row.user_id

        user_id = await asyncio.to_thread(tx)
        await self._revoke_user(user_id, refresh_tokens=True)

    # ---- API keys -------------------------------------------------------------------------------------------

    async def create_api_key(self, principal: Principal, *, name: str) -> ApiKey:
        self._no_obo(principal, "create API keys")
        name = " ".join((name or "").split())
        if not name:
            raise InvalidArgument("API key name is required")
        if len(name) > 100:
            raise InvalidArgument("API key name must be at most 100 characters long")
        secret = API_KEY_PREFIX + secrets.token_urlsafe(32)

        def tx() -> Any:
            with self.engine.begin() as conn:
                return repository.insert_api_key(
                    conn,
                    key_id=uuid.uuid4(),
                    user_id=uuid.UUID(principal.user_id),
                    name=name,
                    prefix=secret[:11],
                    secret_hash=sha256_hex(secret),
                )

        return ApiKey.from_row(await asyncio.to_thread(tx), secret=secret)

    async def list_api_keys(self, principal: Principal) -> list[ApiKey]:
        def q() -> list[Any]:
            with self.engine.connect() as conn:
                return repository.list_api_keys(conn, user_id=uuid.UUID(principal.user_id))

        return [ApiKey.from_row(r) for r in await asyncio.to_thread(q)]

    async def revoke_api_key(self, principal: Principal, *, key_id: str) -> None:
        kid = _uuid(key_id, "key_id")

        def tx() -> None:
            with self.engine.begin() as conn:
                row = repository.get_api_key(conn, key_id=kid, user_id=uuid.UUID(principal.user_id))
                if row is None:
                    raise NotFound("API key not found")
                if row.revoked_at is None:
                    repository.update_api_key(conn, key_id=kid, revoked_at=_now())

        await asyncio.to_thread(tx)

    async def exchange_api_key(self, *, api_key: str) -> AccessToken:
        api_key = (api_key or "").strip()
        if not api_key:
            raise InvalidArgument("api_key is required")
        if not api_key.startswith(API_KEY_PREFIX):
            raise Unauthenticated("invalid API key")
        key = await self.keys.current()
        ttl = self.settings.api_key_token_ttl_s

        def tx() -> Any:
            with self.engine.begin() as conn:
                row = repository.get_api_key_by_hash(conn, secret_hash=sha256_hex(api_key))
                if row is None:
                    raise Unauthenticated("invalid API key")
                if row.revoked_at is not None:
                    raise Unauthenticated("API key revoked")
                user = repository.get_user(conn, user_id=row.user_id)
                if user is None or not user.active:
                    raise Unauthenticated("this account is deactivated")
                repository.update_api_key(conn, key_id=row.id, last_used_at=_now())
                return self._sign(key, user, ttl=ttl)

        issued = await asyncio.to_thread(tx)
        return AccessToken(issued.token, ttl)

    # ---- service credentials ------------------------------------------------------------------------------

    async def issue_on_behalf_of(self, *, service_id: str, service_secret: str, user_id: str, purpose: str) -> AccessToken:
        expected = self._service_credentials.get(service_id or "")
        # compare_digest on equal-length digests so the secret's length does not leak either
        if expected is None or not hmac.compare_digest(sha256_hex(expected), sha256_hex(service_secret or "")):
            raise Unauthenticated("invalid service credentials")
        target = _uuid(user_id, "user_id")
        purpose = (purpose or "").strip()
        if not purpose:
            raise InvalidArgument("purpose is required (it is audited)")
        key = await self.keys.current()
        ttl = self.settings.obo_token_ttl_s
        row = await asyncio.to_thread(self._load_user, target)
        if row is None:
            raise NotFound("user not found")
        if not row.active:
            raise FailedPrecondition("the user is deactivated")
        issued = self._sign(key, row, ttl=ttl, act=service_id)
        log.info(
            "on-behalf-of token issued",
            extra={"service_id": service_id, "user_id": user_id, "purpose": purpose[:200], "jti": issued.jti},
        )
        return AccessToken(issued.token, ttl)

    # ---- organizations -------------------------------------------------------------------------------------

    async def list_organizations(self, principal: Principal, *, limit: int, cursor: str) -> Page:
        limit = _page_limit(limit)
        after = _decode_cursor(cursor)
        only = None
        if principal.role != PLATFORM_ADMIN:
            if not principal.organization_id:
                return Page([], "")
            only = uuid.UUID(principal.organization_id)

        def q() -> list[Any]:
            with self.engine.connect() as conn:
                return repository.list_organizations(conn, limit=limit + 1, after=after, only_id=only)

        rows = await asyncio.to_thread(q)
        more = len(rows) > limit
        rows = rows[:limit]
        orgs = [Organization(str(r.id), r.name, int(r.user_count), r.created_at) for r in rows]
        return Page(orgs, _encode_cursor(rows[-1].created_at, rows[-1].id) if more else "")

    # ---- bootstrap ------------------------------------------------------------------------------------------

    def create_admin_sync(self, *, email: str, password: str, promote: bool = False) -> tuple[str, str]:
        """Creates a platform_admin without organization. Returns (outcome, user_id):
        "created", "exists" (already platform_admin), "promoted"; raises AlreadyExists otherwise."""
        email = normalize_email(email)
        self._check_password(password)
        with self.engine.begin() as conn:
            row = repository.get_user_by_email(conn, email=email)
            if row is not None:
                if row.role == PLATFORM_ADMIN:
                    return "exists", str(row.id)
                if not promote:
                    raise AlreadyExists(
                        f"{email} already exists with role {row.role}; pass --promote to make it platform_admin"
                    )
                repository.update_user(conn, user_id=row.id, role=PLATFORM_ADMIN, active=True)
                return "promoted", str(row.id)
            user_id = uuid.uuid4()
            repository.insert_user(
                conn,
                user_id=user_id,
                email=email,
                password_hash=self.passwords.hash(password),
                organization_id=None,
                role=PLATFORM_ADMIN,
                email_verified=True,
            )
            return "created", str(user_id)
