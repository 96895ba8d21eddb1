"""One-time links sent by mail (verify e-mail, reset password, accept invitation): the random
token in the link, its stored SHA-256, the web UI address it opens and best-effort delivery."""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sqlalchemy import Connection

from hemovision_auth import repository
from hemovision_auth.mailer import Mail, Mailer
from hemovision_auth.passwords import sha256_hex

log = logging.getLogger(__name__)

VERIFY_EMAIL = "verify"
RESET_PASSWORD = "reset"


def new_link_token() -> str:
    return secrets.token_urlsafe(32)


class MailLinks:
    def __init__(self, *, mailer: Mailer, public_base_url: str) -> None:
        self.mailer = mailer
        self.public_base_url = public_base_url.rstrip("/")

    def url(self, path: str, token: str) -> str:
        """The web UI page `path` that takes `token` (e.g. "verify-email")."""
        return f"{self.public_base_url}/{path}?token={quote(token)}"

    async def send(self, mail: Mail) -> None:
        """Best effort: an unreachable mail server must not fail the request that triggered it."""
        try:
            await self.mailer.send(mail)
        except Exception:  # noqa: BLE001
            log.exception("could not send mail", extra={"to": mail.to, "subject": mail.subject})

    @staticmethod
    def store_email_token(conn: Connection, *, user_id: uuid.UUID, purpose: str, email: str, ttl_s: int) -> str:
        """A new verification or reset token for `email`, stored hashed in the caller's transaction."""
        token = new_link_token()
        repository.insert_email_token(
            conn,
            token_id=uuid.uuid4(),
            user_id=user_id,
            purpose=purpose,
            email=email,
            token_hash=sha256_hex(token),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
        )
        return token
