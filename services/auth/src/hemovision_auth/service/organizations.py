"""Organizations: registering one (with its first user as org_admin) and listing them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from hemovision_auth import repository
from hemovision_auth.domain import Organization, Page, User
from hemovision_auth.errors import AlreadyExists, InvalidArgument
from hemovision_auth.service.links import VERIFY_EMAIL, MailLinks
from hemovision_auth.mailer import verification_mail
from hemovision_auth.service.pagination import page_of, page_request
from hemovision_auth.passwords import Passwords
from hemovision_auth.settings import Settings
from hemovision_auth.service.validation import normalize_email, one_line
from hemovision_contracts import ORG_ADMIN, PLATFORM_ADMIN
from hemovision_tokens import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OrganizationService:
    settings: Settings
    engine: Engine
    passwords: Passwords
    links: MailLinks

    async def register(self, *, email: str, password: str, organization_name: str) -> User:
        """A new organization and its first user, an org_admin; sends the e-mail verification link."""
        email = normalize_email(email)
        self.passwords.check(password)
        name = one_line(organization_name)
        if not name:
            raise InvalidArgument("organization name is required")
        if not 2 <= len(name) <= 200:
            raise InvalidArgument("organization name must be 2 to 200 characters long")
        password_hash = await self.passwords.hash_async(password)
        user_id, org_id = uuid.uuid4(), uuid.uuid4()

        def tx() -> tuple[Any, str]:
            with self.engine.begin() as conn:
                if repository.email_taken(conn, email=email):
                    raise AlreadyExists("an account with this e-mail address already exists")
                if repository.organization_name_taken(conn, name=name):
                    raise AlreadyExists(f"an organization named '{name}' already exists")
                repository.insert_organization(conn, org_id=org_id, name=name)
                repository.insert_user(
                    conn, user_id=user_id, email=email, password_hash=password_hash, organization_id=org_id,
                    role=ORG_ADMIN,
                )
                token = self.links.store_email_token(
                    conn, user_id=user_id, purpose=VERIFY_EMAIL, email=email,
                    ttl_s=self.settings.email_verification_ttl_s,
                )
                return repository.get_user(conn, user_id=user_id), token

        try:
            row, token = await asyncio.to_thread(tx)
        except IntegrityError:  # a concurrent registration won the race
            raise AlreadyExists("an account with this e-mail address or organization name already exists") from None
        log.info("registered", extra={"user_id": str(user_id), "organization_id": str(org_id)})
        await self.links.send(verification_mail(to=email, link=self.links.url("verify-email", token)))
        return User.from_row(row)

    async def list_organizations(self, principal: Principal, *, limit: int, cursor: str) -> Page:
        """Every organization for a platform_admin; the caller's own (if any) for anyone else."""
        limit, after = page_request("organizations", limit, cursor)
        only = None
        if principal.role != PLATFORM_ADMIN:
            if not principal.organization_id:
                return Page([], "")
            only = uuid.UUID(principal.organization_id)

        def q() -> list[Any]:
            with self.engine.connect() as conn:
                return repository.list_organizations(conn, limit=limit + 1, after=after, only_id=only)

        rows = await asyncio.to_thread(q)
        return page_of(
            "organizations", rows, limit, lambda r: Organization(str(r.id), r.name, int(r.user_count), r.created_at)
        )
