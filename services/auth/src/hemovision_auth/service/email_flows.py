"""The e-mail flows of an existing account: verifying the address and resetting a forgotten password."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from hemovision_auth import audit, repository
from hemovision_auth.domain import NO_ORIGIN, Origin, User
from hemovision_auth.errors import InvalidArgument, NotFound
from hemovision_auth.service.links import RESET_PASSWORD, VERIFY_EMAIL, MailLinks
from hemovision_auth.mailer import reset_mail, verification_mail
from hemovision_auth.passwords import Passwords, sha256_hex
from hemovision_auth.service.sessions import SessionService
from hemovision_auth.settings import Settings
from hemovision_auth.service.validation import normalize_email
from hemovision_tokens import Principal

_INVALID_VERIFICATION = "this verification link is invalid or has expired"
_INVALID_RESET = "this password reset link is invalid or has expired"


@dataclass(frozen=True, kw_only=True)
class EmailFlowService:
    settings: Settings
    engine: Engine
    passwords: Passwords
    links: MailLinks
    sessions: SessionService

    async def request_email_verification(self, principal: Principal) -> None:
        """Sends the caller a new verification link; nothing if the address is already verified."""
        user_id = uuid.UUID(principal.user_id)

        def tx() -> tuple[Any, str | None]:
            with self.engine.begin() as conn:
                row = repository.get_user(conn, user_id=user_id)
                if row is None:
                    raise NotFound("user not found")
                if row.email_verified:
                    return row, None
                return row, self.links.store_email_token(
                    conn, user_id=user_id, purpose=VERIFY_EMAIL, email=row.email,
                    ttl_s=self.settings.email_verification_ttl_s,
                )

        row, token = await asyncio.to_thread(tx)
        if token:
            await self.links.send(verification_mail(to=row.email, link=self.links.url("verify-email", token)))

    async def verify_email(self, *, token: str) -> User:
        """Marks the address verified and uses up every open verification link of the user."""
        if not token:
            raise InvalidArgument("token is required")

        def tx() -> Any:
            with self.engine.begin() as conn:
                row = repository.get_email_token_for_update(conn, token_hash=sha256_hex(token), purpose=VERIFY_EMAIL)
                if row is None or row.used_at is not None or row.expires_at <= datetime.now(UTC):
                    raise InvalidArgument(_INVALID_VERIFICATION)
                user = repository.get_user(conn, user_id=row.user_id)
                if user is None or user.email != row.email:
                    raise InvalidArgument(_INVALID_VERIFICATION)
                repository.update_user(conn, user_id=row.user_id, email_verified=True)
                repository.use_email_tokens(conn, user_id=row.user_id, purpose=VERIFY_EMAIL, at=datetime.now(UTC))
                return repository.get_user(conn, user_id=row.user_id)

        return User.from_row(await asyncio.to_thread(tx))

    async def request_password_reset(self, *, email: str) -> None:
        """Mails a reset link to an active account; answers the same whether or not the address exists."""
        email = normalize_email(email)

        def tx() -> str | None:
            with self.engine.begin() as conn:
                row = repository.get_user_by_email(conn, email=email)
                if row is None or not row.active:
                    return None
                return self.links.store_email_token(
                    conn, user_id=row.id, purpose=RESET_PASSWORD, email=email, ttl_s=self.settings.password_reset_ttl_s
                )

        token = await asyncio.to_thread(tx)
        if token:
            await self.links.send(
                reset_mail(
                    to=email,
                    link=self.links.url("reset-password", token),
                    ttl_minutes=max(1, self.settings.password_reset_ttl_s // 60),
                )
            )

    async def reset_password(self, *, token: str, new_password: str, origin: Origin = NO_ORIGIN) -> None:
        """Sets the password, marks the e-mail verified (the link reached it) and ends every session."""
        if not token:
            raise InvalidArgument("token is required")
        self.passwords.check(new_password, "new password")
        new_hash = await self.passwords.hash_async(new_password)

        def tx() -> uuid.UUID:
            with self.engine.begin() as conn:
                row = repository.get_email_token_for_update(conn, token_hash=sha256_hex(token), purpose=RESET_PASSWORD)
                now = datetime.now(UTC)
                if row is None or row.used_at is not None or row.expires_at <= now:
                    raise InvalidArgument(_INVALID_RESET)
                user = repository.get_user(conn, user_id=row.user_id)
                if user is None or not user.active or user.email != row.email:
                    raise InvalidArgument(_INVALID_RESET)
                repository.update_user(
                    conn, user_id=row.user_id, password_hash=new_hash, password_changed_at=now, email_verified=True
                )
                repository.use_email_tokens(conn, user_id=row.user_id, purpose=RESET_PASSWORD, at=now)
                audit.record(
                    conn, audit.PASSWORD_RESET, origin=origin, user_id=row.user_id,
                    organization_id=user.organization_id, target_type="user", target_id=row.user_id,
                )
                return row.user_id

        user_id = await asyncio.to_thread(tx)
        await self.sessions.end_user_sessions(user_id, refresh_tokens=True)
