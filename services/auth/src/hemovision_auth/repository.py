"""SQL of the auth service (SQLAlchemy Core). Every function takes a Connection and keyword-only args;
queries on users of an organization are filtered by organization_id by the caller-given scope."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hemovision_auth.tables import (
    api_keys,
    audit_outbox,
    email_tokens,
    invitations,
    login_attempts,
    organizations,
    refresh_tokens,
    sessions,
    signing_keys,
    users,
)

# A user row carries its organization's name and its sign-in lockout (locked_until, maybe past).
_USER_COLUMNS = [*users.c, organizations.c.name.label("organization_name"), login_attempts.c.locked_until]


def _users_join():
    return users.outerjoin(organizations, organizations.c.id == users.c.organization_id).outerjoin(
        login_attempts, login_attempts.c.email == users.c.email
    )


# -- organizations -------------------------------------------------------------------------------


def insert_organization(conn: Connection, *, org_id: uuid.UUID, name: str) -> None:
    conn.execute(insert(organizations).values(id=org_id, name=name))


def organization_name_taken(conn: Connection, *, name: str) -> bool:
    return conn.execute(select(organizations.c.id).where(func.lower(organizations.c.name) == name.lower())).first() is not None


def get_organization(conn: Connection, *, org_id: uuid.UUID) -> Row | None:
    return conn.execute(select(organizations).where(organizations.c.id == org_id)).first()


def list_organizations(
    conn: Connection, *, limit: int, after: tuple[datetime, uuid.UUID] | None, only_id: uuid.UUID | None
) -> list[Row]:
    count = (
        select(func.count(users.c.id)).where(users.c.organization_id == organizations.c.id).scalar_subquery()
    )
    q = select(organizations, count.label("user_count"))
    if only_id is not None:
        q = q.where(organizations.c.id == only_id)
    if after is not None:
        q = q.where(
            or_(
                organizations.c.created_at > after[0],
                and_(organizations.c.created_at == after[0], organizations.c.id > after[1]),
            )
        )
    return list(conn.execute(q.order_by(organizations.c.created_at, organizations.c.id).limit(limit)))


# -- users ------------------------------------------------------------------------------------------


def insert_user(
    conn: Connection,
    *,
    user_id: uuid.UUID,
    email: str,
    password_hash: str,
    organization_id: uuid.UUID | None,
    role: str,
    email_verified: bool = False,
) -> None:
    conn.execute(
        insert(users).values(
            id=user_id,
            email=email,
            password_hash=password_hash,
            organization_id=organization_id,
            role=role,
            email_verified=email_verified,
        )
    )


def email_taken(conn: Connection, *, email: str) -> bool:
    return conn.execute(select(users.c.id).where(users.c.email == email)).first() is not None


def get_user(conn: Connection, *, user_id: uuid.UUID, organization_id: uuid.UUID | None = None, for_update: bool = False) -> Row | None:
    """One user; with `organization_id`, only if it belongs to that organization."""
    q = select(*_USER_COLUMNS).select_from(_users_join()).where(users.c.id == user_id)
    if organization_id is not None:
        q = q.where(users.c.organization_id == organization_id)
    if for_update:
        q = q.with_for_update(of=users)
    return conn.execute(q).first()


def get_user_by_email(conn: Connection, *, email: str) -> Row | None:
    return conn.execute(select(*_USER_COLUMNS).select_from(_users_join()).where(users.c.email == email)).first()


def list_users(
    conn: Connection, *, organization_id: uuid.UUID | None, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> list[Row]:
    """Users oldest first; `organization_id=None` lists every organization (platform_admin)."""
    q = select(*_USER_COLUMNS).select_from(_users_join())
    if organization_id is not None:
        q = q.where(users.c.organization_id == organization_id)
    if after is not None:
        q = q.where(or_(users.c.created_at > after[0], and_(users.c.created_at == after[0], users.c.id > after[1])))
    return list(conn.execute(q.order_by(users.c.created_at, users.c.id).limit(limit)))


def update_user(conn: Connection, *, user_id: uuid.UUID, **values: Any) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(**values))


def delete_user(conn: Connection, *, user_id: uuid.UUID) -> None:
    conn.execute(delete(users).where(users.c.id == user_id))


# -- refresh tokens -------------------------------------------------------------------------------


def insert_refresh_token(
    conn: Connection,
    *,
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    token_hash: str,
    expires_at: datetime,
    access_jti: str,
    access_expires_at: datetime,
) -> None:
    conn.execute(
        insert(refresh_tokens).values(
            id=token_id,
            user_id=user_id,
            family_id=family_id,
            token_hash=token_hash,
            expires_at=expires_at,
            access_jti=access_jti,
            access_expires_at=access_expires_at,
        )
    )


def get_refresh_token_for_update(conn: Connection, *, token_hash: str) -> Row | None:
    return conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash).with_for_update()).first()


def get_refresh_token_by_access_jti(conn: Connection, *, access_jti: str) -> Row | None:
    return conn.execute(select(refresh_tokens).where(refresh_tokens.c.access_jti == access_jti)).first()


def mark_refresh_token_used(conn: Connection, *, token_id: uuid.UUID, at: datetime) -> None:
    conn.execute(update(refresh_tokens).where(refresh_tokens.c.id == token_id).values(used_at=at))


def revoke_refresh_family(conn: Connection, *, family_id: uuid.UUID, at: datetime) -> list[Row]:
    """Revokes every token of a family (and its session); returns the (access_jti, access_expires_at)
    still to revoke."""
    conn.execute(update(sessions).where(sessions.c.id == family_id, sessions.c.revoked_at.is_(None)).values(revoked_at=at))
    conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return list(
        conn.execute(
            select(refresh_tokens.c.access_jti, refresh_tokens.c.access_expires_at).where(
                refresh_tokens.c.family_id == family_id,
                refresh_tokens.c.access_jti.is_not(None),
                refresh_tokens.c.access_expires_at > at,
            )
        )
    )


def revoke_user_refresh_tokens(conn: Connection, *, user_id: uuid.UUID, at: datetime) -> None:
    conn.execute(
        update(sessions).where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)).values(revoked_at=at)
    )
    conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )


# -- sessions (refresh families) ------------------------------------------------------------------


def insert_session(
    conn: Connection, *, session_id: uuid.UUID, user_id: uuid.UUID, client_ip: str, user_agent: str, at: datetime
) -> None:
    conn.execute(
        insert(sessions).values(
            id=session_id, user_id=user_id, client_ip=client_ip[:64], user_agent=user_agent[:256],
            created_at=at, last_used_at=at,
        )
    )


def touch_session(conn: Connection, *, session_id: uuid.UUID, at: datetime) -> None:
    conn.execute(update(sessions).where(sessions.c.id == session_id).values(last_used_at=at))


def _live(now: datetime):
    """A session is live while it is not revoked and its family holds an unused, unexpired refresh token."""
    alive = (
        select(refresh_tokens.c.id)
        .where(
            refresh_tokens.c.family_id == sessions.c.id,
            refresh_tokens.c.used_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.expires_at > now,
        )
        .exists()
    )
    return and_(sessions.c.revoked_at.is_(None), alive)


def list_live_sessions(conn: Connection, *, user_id: uuid.UUID, now: datetime) -> list[Row]:
    return list(
        conn.execute(
            select(sessions)
            .where(sessions.c.user_id == user_id, _live(now))
            .order_by(sessions.c.created_at.desc(), sessions.c.id)
        )
    )


def get_live_session(conn: Connection, *, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> Row | None:
    return conn.execute(
        select(sessions).where(sessions.c.id == session_id, sessions.c.user_id == user_id, _live(now))
    ).first()


def count_live_sessions(conn: Connection, *, user_id: uuid.UUID, now: datetime) -> int:
    return int(
        conn.execute(select(func.count()).select_from(sessions).where(sessions.c.user_id == user_id, _live(now))).scalar()
    )


# -- sign-in lockout ---------------------------------------------------------------------------------


def get_login_attempts(conn: Connection, *, email: str, for_update: bool = False) -> Row | None:
    q = select(login_attempts).where(login_attempts.c.email == email)
    return conn.execute(q.with_for_update() if for_update else q).first()


def lock_login_attempts(conn: Connection, *, email: str) -> Row:
    """The e-mail's counter row, created if missing, locked until the transaction ends (so
    concurrent failures of one address are counted one after the other, on any replica)."""
    conn.execute(pg_insert(login_attempts).values(email=email).on_conflict_do_nothing(index_elements=["email"]))
    return conn.execute(select(login_attempts).where(login_attempts.c.email == email).with_for_update()).one()


def update_login_attempts(conn: Connection, *, email: str, **values: Any) -> None:
    conn.execute(update(login_attempts).where(login_attempts.c.email == email).values(**values))


def clear_login_attempts(conn: Connection, *, email: str) -> bool:
    """Forgets the e-mail's failures and lockout; True if there was a lockout in force."""
    row = conn.execute(
        delete(login_attempts).where(login_attempts.c.email == email).returning(login_attempts.c.locked_until)
    ).first()
    return row is not None and row.locked_until is not None and row.locked_until > datetime.now(row.locked_until.tzinfo)


def delete_stale_login_attempts(conn: Connection, *, now: datetime, failed_before: datetime) -> int:
    """Counters that no longer matter: not locked, and the last failure older than `failed_before`."""
    return conn.execute(
        delete(login_attempts).where(
            or_(login_attempts.c.locked_until.is_(None), login_attempts.c.locked_until <= now),
            or_(login_attempts.c.last_failure_at.is_(None), login_attempts.c.last_failure_at < failed_before),
        )
    ).rowcount


# -- audit outbox ------------------------------------------------------------------------------------


def insert_audit_event(conn: Connection, **values: Any) -> None:
    conn.execute(insert(audit_outbox).values(**values))


def claim_audit_events(conn: Connection, *, now: datetime, lease_until: datetime, limit: int) -> list[Row]:
    """Up to `limit` due, unforwarded events, oldest first, leased until `lease_until` (another
    replica's forwarder skips them meanwhile; a crash lets the lease run out and they are resent)."""
    due = (
        select(audit_outbox.c.id)
        .where(audit_outbox.c.forwarded_at.is_(None), audit_outbox.c.next_attempt_at <= now)
        .order_by(audit_outbox.c.occurred_at, audit_outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [r.id for r in conn.execute(due)]
    if not ids:
        return []
    conn.execute(update(audit_outbox).where(audit_outbox.c.id.in_(ids)).values(next_attempt_at=lease_until))
    return list(
        conn.execute(
            select(audit_outbox).where(audit_outbox.c.id.in_(ids)).order_by(audit_outbox.c.occurred_at, audit_outbox.c.id)
        )
    )


def mark_audit_events_forwarded(conn: Connection, *, ids: list[uuid.UUID], at: datetime) -> None:
    conn.execute(update(audit_outbox).where(audit_outbox.c.id.in_(ids)).values(forwarded_at=at, last_error=None))


def defer_audit_events(conn: Connection, *, ids: list[uuid.UUID], next_attempt_at: datetime, error: str) -> None:
    conn.execute(
        update(audit_outbox)
        .where(audit_outbox.c.id.in_(ids))
        .values(attempts=audit_outbox.c.attempts + 1, next_attempt_at=next_attempt_at, last_error=error[:500])
    )


def delete_forwarded_audit_events(conn: Connection, *, before: datetime) -> int:
    return conn.execute(
        delete(audit_outbox).where(audit_outbox.c.forwarded_at.is_not(None), audit_outbox.c.forwarded_at < before)
    ).rowcount


# -- signing keys ---------------------------------------------------------------------------------


def current_signing_key(conn: Connection) -> Row | None:
    return conn.execute(select(signing_keys).where(signing_keys.c.current.is_(True))).first()


def get_signing_key(conn: Connection, *, kid: str) -> Row | None:
    return conn.execute(select(signing_keys).where(signing_keys.c.kid == kid)).first()


def insert_signing_key(
    conn: Connection, *, kid: str, algorithm: str, private_key_pem: str, public_key_pem: str, current: bool
) -> None:
    conn.execute(
        insert(signing_keys).values(
            kid=kid, algorithm=algorithm, private_key_pem=private_key_pem, public_key_pem=public_key_pem, current=current
        )
    )


def retire_current_signing_key(conn: Connection, *, at: datetime) -> None:
    conn.execute(update(signing_keys).where(signing_keys.c.current.is_(True)).values(current=False, retired_at=at))


def published_signing_keys(conn: Connection, *, retired_after: datetime) -> list[Row]:
    """The current key first, then keys retired after `retired_after` (their tokens may still be alive)."""
    return list(
        conn.execute(
            select(signing_keys)
            .where(or_(signing_keys.c.current.is_(True), signing_keys.c.retired_at > retired_after))
            .order_by(signing_keys.c.current.desc(), signing_keys.c.created_at.desc())
        )
    )


# -- API keys ---------------------------------------------------------------------------------------


def insert_api_key(
    conn: Connection, *, key_id: uuid.UUID, user_id: uuid.UUID, name: str, prefix: str, secret_hash: str
) -> Row:
    conn.execute(
        insert(api_keys).values(id=key_id, user_id=user_id, name=name, prefix=prefix, secret_hash=secret_hash)
    )
    return conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one()


def list_api_keys(conn: Connection, *, user_id: uuid.UUID) -> list[Row]:
    return list(
        conn.execute(
            select(api_keys).where(api_keys.c.user_id == user_id).order_by(api_keys.c.created_at.desc(), api_keys.c.id)
        )
    )


def get_api_key(conn: Connection, *, key_id: uuid.UUID, user_id: uuid.UUID) -> Row | None:
    return conn.execute(select(api_keys).where(api_keys.c.id == key_id, api_keys.c.user_id == user_id)).first()


def get_api_key_by_hash(conn: Connection, *, secret_hash: str) -> Row | None:
    return conn.execute(select(api_keys).where(api_keys.c.secret_hash == secret_hash)).first()


def update_api_key(conn: Connection, *, key_id: uuid.UUID, **values: Any) -> None:
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))


# -- invitations -------------------------------------------------------------------------------------


def insert_invitation(
    conn: Connection,
    *,
    invitation_id: uuid.UUID,
    organization_id: uuid.UUID,
    email: str,
    role: str,
    token_hash: str,
    invited_by: uuid.UUID,
    expires_at: datetime,
) -> None:
    # A new invitation replaces a pending one for the same address in the same organization.
    conn.execute(
        delete(invitations).where(
            invitations.c.organization_id == organization_id,
            invitations.c.email == email,
            invitations.c.accepted_at.is_(None),
        )
    )
    conn.execute(
        insert(invitations).values(
            id=invitation_id,
            organization_id=organization_id,
            email=email,
            role=role,
            token_hash=token_hash,
            invited_by=invited_by,
            expires_at=expires_at,
        )
    )


def get_invitation_for_update(conn: Connection, *, token_hash: str) -> Row | None:
    return conn.execute(select(invitations).where(invitations.c.token_hash == token_hash).with_for_update()).first()


def mark_invitation_accepted(conn: Connection, *, invitation_id: uuid.UUID, at: datetime) -> None:
    conn.execute(update(invitations).where(invitations.c.id == invitation_id).values(accepted_at=at))


# -- e-mail tokens -----------------------------------------------------------------------------------


def insert_email_token(
    conn: Connection,
    *,
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    purpose: str,
    email: str,
    token_hash: str,
    expires_at: datetime,
) -> None:
    conn.execute(
        insert(email_tokens).values(
            id=token_id, user_id=user_id, purpose=purpose, email=email, token_hash=token_hash, expires_at=expires_at
        )
    )


def get_email_token_for_update(conn: Connection, *, token_hash: str, purpose: str) -> Row | None:
    return conn.execute(
        select(email_tokens)
        .where(email_tokens.c.token_hash == token_hash, email_tokens.c.purpose == purpose)
        .with_for_update()
    ).first()


def use_email_tokens(conn: Connection, *, user_id: uuid.UUID, purpose: str, at: datetime) -> None:
    """Marks every open token of this purpose used (one use, and older links die with it)."""
    conn.execute(
        update(email_tokens)
        .where(email_tokens.c.user_id == user_id, email_tokens.c.purpose == purpose, email_tokens.c.used_at.is_(None))
        .values(used_at=at)
    )
