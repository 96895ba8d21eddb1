"""Invitations: an org_admin invites a colleague by e-mail; the link creates the account."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from hemovision_auth import audit, repository
from hemovision_auth.domain import NO_ORIGIN, Invitation, Origin, User
from hemovision_auth.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hemovision_auth.service.links import MailLinks, new_link_token
from hemovision_auth.mailer import invitation_mail
from hemovision_auth.passwords import Passwords, sha256_hex
from hemovision_auth.settings import Settings
from hemovision_auth.service.validation import normalize_email, refuse_on_behalf_of
from hemovision_contracts import LAB_USER, ORGANIZATION_ROLES, USER_ADMIN_ROLES, is_organization_role
from hemovision_tokens import Principal, check_role

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class InvitationService:
    settings: Settings
    engine: Engine
    passwords: Passwords
    links: MailLinks

    async def invite_user(self, principal: Principal, *, email: str, role: str, origin: Origin = NO_ORIGIN) -> Invitation:
        """Invites `email` into the caller's organization with an organization role (lab_user by default);
        a new invitation to the same address replaces a pending one."""
        check_role(principal, USER_ADMIN_ROLES)
        refuse_on_behalf_of(principal, "invite users")
        if not principal.organization_id:
            raise FailedPrecondition("you have no organization to invite into")
        email = normalize_email(email)
        role = role or LAB_USER
        if not is_organization_role(role):
            raise InvalidArgument(f"an invitation grants {' or '.join(ORGANIZATION_ROLES)}")
        org_id = uuid.UUID(principal.organization_id)
        token = new_link_token()
        invitation_id = uuid.uuid4()
        expires_at = datetime.now(UTC) + timedelta(seconds=self.settings.invitation_ttl_s)

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
                audit.record(
                    conn, audit.INVITATION_CREATE, origin=origin, actor=principal, organization_id=org_id,
                    target_type="invitation", target_id=invitation_id, details={"email": email, "role": role},
                )
                return org

        org = await asyncio.to_thread(tx)
        await self.links.send(
            invitation_mail(
                to=email,
                link=self.links.url("accept-invite", token),
                organization=org.name,
                role=role,
                inviter=principal.email or "A colleague",
            )
        )
        log.info("invited", extra={"invitation_id": str(invitation_id), "by": principal.user_id})
        return Invitation(str(invitation_id), email, role, expires_at)

    async def accept_invitation(self, *, token: str, password: str, origin: Origin = NO_ORIGIN) -> User:
        """Creates the invited user (e-mail verified: the link reached the mailbox) with the invited role."""
        if not token:
            raise InvalidArgument("token is required")
        self.passwords.check(password)
        password_hash = await self.passwords.hash_async(password)

        def tx() -> Any:
            with self.engine.begin() as conn:
                inv = repository.get_invitation_for_update(conn, token_hash=sha256_hex(token))
                if inv is None or inv.accepted_at is not None or inv.expires_at <= datetime.now(UTC):
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
                    email_verified=True,
                )
                repository.mark_invitation_accepted(conn, invitation_id=inv.id, at=datetime.now(UTC))
                audit.record(
                    conn, audit.INVITATION_ACCEPT, origin=origin, user_id=user_id, organization_id=inv.organization_id,
                    target_type="invitation", target_id=inv.id,
                    details={"email": inv.email, "role": inv.role, "invited_by": str(inv.invited_by or "")},
                )
                return repository.get_user(conn, user_id=user_id)

        return User.from_row(await asyncio.to_thread(tx))
