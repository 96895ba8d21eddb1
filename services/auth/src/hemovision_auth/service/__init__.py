"""Domain logic of the auth service, one class per responsibility; knows nothing of gRPC and
raises errors.py exceptions. AuthService wires the parts; the servicer calls `service.<part>.<method>`.

    sessions       SessionService: login (with the lockout of lockout.py), refresh, logout, the caller's
                   sessions, on-behalf-of tokens, signing keys, ending sessions
    users          UserService: users and roles (org_admin: its organization, platform_admin: all),
                   own password change, sign out everywhere, unlock, create-admin
    organizations  OrganizationService: register (a new organization and its org_admin), list
    invitations    InvitationService: invite by e-mail, accept
    email_flows    EmailFlowService: verify the e-mail address, reset a forgotten password
    api_keys       ApiKeyService: create, list, revoke, exchange for an access token

Shared by the parts: validation.py (request checks), links.py (one-time mailed links),
pagination.py (the contracts' page rule for auth's listings), lockout.py (failed sign-ins per
e-mail), and hemovision_auth.audit (each change writes its audit event in its own transaction). Database work runs in worker
threads (sync SQLAlchemy, argon2); Redis and mail are awaited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from hemovision_auth.service.api_keys import ApiKeyService
from hemovision_auth.service.email_flows import EmailFlowService
from hemovision_auth.service.invitations import InvitationService
from hemovision_auth.keys import KeyStore
from hemovision_auth.service.links import MailLinks
from hemovision_auth.mailer import Mailer
from hemovision_auth.service.organizations import OrganizationService
from hemovision_auth.passwords import Passwords
from hemovision_auth.service.sessions import SessionService
from hemovision_auth.settings import Settings
from hemovision_auth.service.users import UserService

if TYPE_CHECKING:
    from hemovision_auth.audit import AuditForwarder


class AuthService:
    """What the servicer (and the `create-admin` / `rotate-key` commands) call."""

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
        self.keys = keys
        links = MailLinks(mailer=mailer, public_base_url=settings.public_base_url)
        self.sessions = SessionService(settings, engine=engine, redis=redis, keys=keys, passwords=passwords)
        self.users = UserService(engine=engine, redis=redis, passwords=passwords, sessions=self.sessions)
        self.organizations = OrganizationService(settings=settings, engine=engine, passwords=passwords, links=links)
        self.invitations = InvitationService(settings=settings, engine=engine, passwords=passwords, links=links)
        self.email_flows = EmailFlowService(
            settings=settings, engine=engine, passwords=passwords, links=links, sessions=self.sessions
        )
        self.api_keys = ApiKeyService(settings=settings, engine=engine, keys=keys, sessions=self.sessions)
        # set by create_server when it forwards audit events (HV_AUTH_AUDIT_FORWARD)
        self.audit_forwarder: AuditForwarder | None = None
