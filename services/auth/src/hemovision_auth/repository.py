"""SQL of the auth service (SQLAlchemy Core). Every function takes a Connection and keyword-only args;
queries on users of an organization are filtered by organization_id by the caller-given scope."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, or_, select, update

from hemovision_auth.tables import (
    api_keys,
    email_tokens,
    invitations,
    organizations,
    refresh_tokens,
    signing_keys,
    users,
)

_USER_COLUMNS = [*users.c, organizations.c.name.label("organization_name")]


def _users_join():
    return users.outerjoin(organizations, organizations.c.id == users.c.organization_id)


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
    """Revokes every token of a family; returns the (access_jti, access_expires_at) still to revoke."""
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
        update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )


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
