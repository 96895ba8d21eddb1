"""Outgoing e-mail: the Mailer interface, an SMTP implementation and a log-only one (development)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None: ...


class SmtpMailer:
    """smtplib in a worker thread; one connection per message (mail volume is tiny)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool = False,
        use_ssl: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.use_ssl = starttls, use_ssl
        self.username, self.password, self.timeout = username, password, timeout

    def _send_sync(self, mail: Mail) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Message-ID"] = make_msgid(domain="hemovision")
        msg.set_content(mail.body)
        context = ssl.create_default_context()
        if self.use_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.starttls and not self.use_ssl:
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password)
            client.send_message(msg)

    async def send(self, mail: Mail) -> None:
        await asyncio.to_thread(self._send_sync, mail)


class LogMailer:
    """Development: writes the mail (with its link) to the log instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)
        log.info("mail (not sent, mail_backend=log)", extra={"to": mail.to, "subject": mail.subject, "body": mail.body})


def mailer_from_settings(settings) -> Mailer:  # noqa: ANN001
    if settings.mail_backend == "smtp":
        return SmtpMailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_sender,
            starttls=settings.smtp_starttls,
            use_ssl=settings.smtp_ssl,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout_s,
        )
    return LogMailer()


def verification_mail(*, to: str, link: str) -> Mail:
    return Mail(
        to=to,
        subject="Confirm your HemoVision e-mail address",
        body=f"Hello,\n\nplease confirm your e-mail address for HemoVision by opening this link:\n\n{link}\n\n"
        "If you did not create an account, ignore this message.\n",
    )


def reset_mail(*, to: str, link: str, ttl_minutes: int) -> Mail:
    return Mail(
        to=to,
        subject="Reset your HemoVision password",
        body=f"Hello,\n\nsomeone asked to reset the password of your HemoVision account. To choose a new one, open:\n\n"
        f"{link}\n\nThe link works once and expires in {ttl_minutes} minutes. "
        "If it was not you, ignore this message: your password stays as it is.\n",
    )


def invitation_mail(*, to: str, link: str, organization: str, role: str, inviter: str) -> Mail:
    return Mail(
        to=to,
        subject=f"You are invited to {organization} on HemoVision",
        body=f"Hello,\n\n{inviter} invites you to join {organization} on HemoVision as {role}. "
        f"To accept and choose your password, open:\n\n{link}\n",
    )
