"""Users and their roles: who sees and manages whom (an org_admin its organization, a
platform_admin everyone), own password changes, and the first platform_admin (bootstrap)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from hemovision_auth import audit, repository
from hemovision_auth.domain import NO_ORIGIN, Origin, Page, User
from hemovision_auth.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from hemovision_auth.service.pagination import page_of, page_request
from hemovision_auth.passwords import Passwords
from hemovision_auth.service.sessions import SessionService
from hemovision_auth.service.validation import normalize_email, parse_uuid, refuse_on_behalf_of
from hemovision_contracts import (
    ORG_ADMIN,
    PLATFORM_ADMIN,
    ROLES,
    USER_ADMIN_ROLES,
    is_organization_role,
    needs_role_message,
)
from hemovision_tokens import Principal, check_role, revoke_user_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class UserService:
    engine: Engine
    redis: Any
    passwords: Passwords
    sessions: SessionService

    def _load(self, user_id: uuid.UUID) -> Any:
        with self.engine.connect() as conn:
            return repository.get_user(conn, user_id=user_id)

    @staticmethod
    def _scoped_target(conn: Connection, principal: Principal, user_id: uuid.UUID, *, for_update: bool = False) -> Any:
        """The target user as the caller may see it: platform_admin any, org_admin its organization.
        UserService of another organization are NOT_FOUND, so ids do not leak."""
        if principal.role == PLATFORM_ADMIN:
            row = repository.get_user(conn, user_id=user_id, for_update=for_update)
        elif principal.role == ORG_ADMIN and principal.organization_id:
            row = repository.get_user(
                conn, user_id=user_id, organization_id=uuid.UUID(principal.organization_id), for_update=for_update
            )
        else:
            raise PermissionDenied(needs_role_message(USER_ADMIN_ROLES))
        if row is None:
            raise NotFound("user not found")
        return row

    @staticmethod
    def _check_manageable(principal: Principal, target: Any, what: str) -> None:
        if str(target.id) == principal.user_id:
            raise FailedPrecondition(f"you cannot {what} your own account")
        if principal.role == ORG_ADMIN and not is_organization_role(target.role):
            raise PermissionDenied("only a platform_admin can manage platform users")

    async def get_me(self, principal: Principal) -> User:
        row = await asyncio.to_thread(self._load, uuid.UUID(principal.user_id))
        if row is None:
            raise NotFound("user not found")
        return User.from_row(row)

    async def get_user(self, principal: Principal, *, user_id: str) -> User:
        target = parse_uuid(user_id, "user_id")
        if str(target) == principal.user_id:
            return await self.get_me(principal)

        def q() -> Any:
            with self.engine.connect() as conn:
                return self._scoped_target(conn, principal, target)

        return User.from_row(await asyncio.to_thread(q))

    async def list_users(self, principal: Principal, *, limit: int, cursor: str) -> Page:
        """UserService oldest first: an org_admin's organization, or everyone for a platform_admin."""
        check_role(principal, USER_ADMIN_ROLES)
        limit, after = page_request("users", limit, cursor)
        org = None
        if principal.role == ORG_ADMIN:
            if not principal.organization_id:
                return Page([], "")
            org = uuid.UUID(principal.organization_id)

        def q() -> list[Any]:
            with self.engine.connect() as conn:
                return repository.list_users(conn, organization_id=org, limit=limit + 1, after=after)

        rows = await asyncio.to_thread(q)
        return page_of("users", rows, limit, User.from_row)

    async def set_user_role(self, principal: Principal, *, user_id: str, role: str, origin: Origin = NO_ORIGIN) -> User:
        target_id = parse_uuid(user_id, "user_id")
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}")
        check_role(principal, USER_ADMIN_ROLES)
        if principal.role == ORG_ADMIN and not is_organization_role(role):
            raise PermissionDenied("only a platform_admin can grant ml_engineer or platform_admin")

        def tx() -> Any:
            with self.engine.begin() as conn:
                target = self._scoped_target(conn, principal, target_id, for_update=True)
                self._check_manageable(principal, target, "change the role of")
                if is_organization_role(role) and target.organization_id is None:
                    raise FailedPrecondition("a user without an organization can only hold a platform role")
                repository.update_user(conn, user_id=target_id, role=role)
                audit.record(
                    conn, audit.ROLE_CHANGE, origin=origin, actor=principal, organization_id=target.organization_id,
                    target_type="user", target_id=target_id, details={"from": target.role, "to": role},
                )
                return repository.get_user(conn, user_id=target_id)

        row = await asyncio.to_thread(tx)
        # Access tokens carry the role: end the old ones (refresh tokens stay valid and pick up the new role).
        await self.sessions.end_user_sessions(target_id, refresh_tokens=False)
        log.info("role changed", extra={"user_id": user_id, "role": role, "by": principal.user_id})
        return User.from_row(row)

    async def set_user_active(
        self, principal: Principal, *, user_id: str, active: bool, origin: Origin = NO_ORIGIN
    ) -> User:
        target_id = parse_uuid(user_id, "user_id")

        def tx() -> Any:
            with self.engine.begin() as conn:
                target = self._scoped_target(conn, principal, target_id, for_update=True)
                self._check_manageable(principal, target, "deactivate" if not active else "reactivate")
                repository.update_user(conn, user_id=target_id, active=active)
                if not active:
                    repository.revoke_user_refresh_tokens(conn, user_id=target_id, at=datetime.now(UTC))
                audit.record(
                    conn, audit.ACTIVATE if active else audit.DEACTIVATE, origin=origin, actor=principal,
                    organization_id=target.organization_id, target_type="user", target_id=target_id,
                    details={"email": target.email},
                )
                return repository.get_user(conn, user_id=target_id)

        row = await asyncio.to_thread(tx)
        if not active:
            await revoke_user_tokens(self.redis, str(target_id))
        log.info("user active changed", extra={"user_id": user_id, "active": active, "by": principal.user_id})
        return User.from_row(row)

    async def delete_user(self, principal: Principal, *, user_id: str, origin: Origin = NO_ORIGIN) -> None:
        target_id = parse_uuid(user_id, "user_id")

        def tx() -> None:
            with self.engine.begin() as conn:
                target = self._scoped_target(conn, principal, target_id, for_update=True)
                self._check_manageable(principal, target, "delete")
                repository.delete_user(conn, user_id=target_id)
                audit.record(
                    conn, audit.USER_DELETE, origin=origin, actor=principal, organization_id=target.organization_id,
                    target_type="user", target_id=target_id, details={"email": target.email, "role": target.role},
                )

        await asyncio.to_thread(tx)
        await revoke_user_tokens(self.redis, str(target_id))
        log.info("user deleted", extra={"user_id": user_id, "by": principal.user_id})

    async def change_password(
        self, principal: Principal, *, current_password: str, new_password: str, origin: Origin = NO_ORIGIN
    ) -> None:
        """Sets the caller's own password and ends all its sessions."""
        refuse_on_behalf_of(principal, "change a password")
        if not current_password:
            raise InvalidArgument("current_password is required")
        self.passwords.check(new_password, "new password")
        user_id = uuid.UUID(principal.user_id)
        row = await asyncio.to_thread(self._load, user_id)
        if row is None:
            raise NotFound("user not found")
        if not await self.passwords.verify_async(row.password_hash, current_password):
            raise PermissionDenied("the current password is incorrect")
        new_hash = await self.passwords.hash_async(new_password)

        def tx() -> None:
            with self.engine.begin() as conn:
                repository.update_user(
                    conn, user_id=user_id, password_hash=new_hash, password_changed_at=datetime.now(UTC)
                )
                audit.record(conn, audit.PASSWORD_CHANGE, origin=origin, actor=principal, target_type="user",
                             target_id=user_id)

        await asyncio.to_thread(tx)
        await self.sessions.end_user_sessions(user_id, refresh_tokens=True)

    async def sign_out_everywhere(self, principal: Principal, *, user_id: str = "", origin: Origin = NO_ORIGIN) -> int:
        """Ends every session of the caller, or of a user an org_admin/platform_admin manages:
        all refresh families and every access token issued until now. Returns the sessions ended."""
        refuse_on_behalf_of(principal, "end sessions")
        target_id = parse_uuid(user_id, "user_id") if user_id else uuid.UUID(principal.user_id)
        own = str(target_id) == principal.user_id

        def tx() -> int:
            with self.engine.begin() as conn:
                if own:
                    target = repository.get_user(conn, user_id=target_id)
                    if target is None:
                        raise NotFound("user not found")
                else:
                    target = self._scoped_target(conn, principal, target_id, for_update=True)
                    self._check_manageable(principal, target, "sign out")
                now = datetime.now(UTC)
                ended = repository.count_live_sessions(conn, user_id=target_id, now=now)
                repository.revoke_user_refresh_tokens(conn, user_id=target_id, at=now)
                audit.record(
                    conn, audit.SIGN_OUT_EVERYWHERE, origin=origin, actor=principal,
                    organization_id=target.organization_id, target_type="user", target_id=target_id,
                    details={"sessions_ended": ended},
                )
                return ended

        ended = await asyncio.to_thread(tx)
        await revoke_user_tokens(self.redis, str(target_id))
        log.info("signed out everywhere", extra={"user_id": str(target_id), "sessions": ended, "by": principal.user_id})
        return ended

    async def unlock_user(self, principal: Principal, *, user_id: str, origin: Origin = NO_ORIGIN) -> User:
        """Lifts a sign-in lockout (and forgets the failed attempts) of a user the caller manages."""
        check_role(principal, USER_ADMIN_ROLES)
        refuse_on_behalf_of(principal, "unlock users")
        target_id = parse_uuid(user_id, "user_id")

        def tx() -> Any:
            with self.engine.begin() as conn:
                target = self._scoped_target(conn, principal, target_id, for_update=True)
                if principal.role == ORG_ADMIN and not is_organization_role(target.role):
                    raise PermissionDenied("only a platform_admin can manage platform users")
                was_locked = repository.clear_login_attempts(conn, email=target.email)
                audit.record(
                    conn, audit.UNLOCK, origin=origin, actor=principal, organization_id=target.organization_id,
                    target_type="user", target_id=target_id, details={"email": target.email, "was_locked": was_locked},
                )
                return repository.get_user(conn, user_id=target_id)

        row = await asyncio.to_thread(tx)
        log.info("user unlocked", extra={"user_id": user_id, "by": principal.user_id})
        return User.from_row(row)

    def create_admin_sync(self, *, email: str, password: str, promote: bool = False) -> tuple[str, str]:
        """Creates a platform_admin without organization (`create-admin`). Returns (outcome, user_id):
        "created", "exists" (already platform_admin), "promoted"; raises AlreadyExists otherwise."""
        email = normalize_email(email)
        self.passwords.check(password)
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
