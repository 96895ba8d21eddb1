"""API keys: long-lived secrets a user creates for scripts, exchanged for short access tokens."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from hemovision_auth import audit, repository
from hemovision_auth.domain import NO_ORIGIN, AccessToken, ApiKey, Origin
from hemovision_auth.errors import InvalidArgument, NotFound, Unauthenticated
from hemovision_auth.keys import KeyStore
from hemovision_auth.passwords import sha256_hex
from hemovision_auth.service.sessions import SessionService
from hemovision_auth.settings import Settings
from hemovision_auth.service.validation import one_line, parse_uuid, refuse_on_behalf_of
from hemovision_tokens import Principal

API_KEY_PREFIX = "hv_"
_SHOWN_PREFIX_LENGTH = 11  # "hv_" + 8 characters: enough to recognise a key in a list


@dataclass(frozen=True, kw_only=True)
class ApiKeyService:
    settings: Settings
    engine: Engine
    keys: KeyStore
    sessions: SessionService

    async def create_api_key(self, principal: Principal, *, name: str, origin: Origin = NO_ORIGIN) -> ApiKey:
        """A new key of the caller; its secret is in this answer only (the database keeps its SHA-256)."""
        refuse_on_behalf_of(principal, "create API keys")
        name = one_line(name)
        if not name:
            raise InvalidArgument("API key name is required")
        if len(name) > 100:
            raise InvalidArgument("API key name must be at most 100 characters long")
        secret = API_KEY_PREFIX + secrets.token_urlsafe(32)

        def tx() -> Any:
            with self.engine.begin() as conn:
                row = repository.insert_api_key(
                    conn,
                    key_id=uuid.uuid4(),
                    user_id=uuid.UUID(principal.user_id),
                    name=name,
                    prefix=secret[:_SHOWN_PREFIX_LENGTH],
                    secret_hash=sha256_hex(secret),
                )
                audit.record(
                    conn, audit.API_KEY_CREATE, origin=origin, actor=principal, target_type="api_key",
                    target_id=row.id, details={"name": name, "prefix": row.prefix},
                )
                return row

        return ApiKey.from_row(await asyncio.to_thread(tx), secret=secret)

    async def list_api_keys(self, principal: Principal) -> list[ApiKey]:
        def q() -> list[Any]:
            with self.engine.connect() as conn:
                return repository.list_api_keys(conn, user_id=uuid.UUID(principal.user_id))

        return [ApiKey.from_row(r) for r in await asyncio.to_thread(q)]

    async def revoke_api_key(self, principal: Principal, *, key_id: str, origin: Origin = NO_ORIGIN) -> None:
        kid = parse_uuid(key_id, "key_id")

        def tx() -> None:
            with self.engine.begin() as conn:
                row = repository.get_api_key(conn, key_id=kid, user_id=uuid.UUID(principal.user_id))
                if row is None:
                    raise NotFound("API key not found")
                if row.revoked_at is None:
                    repository.update_api_key(conn, key_id=kid, revoked_at=datetime.now(UTC))
                    audit.record(
                        conn, audit.API_KEY_REVOKE, origin=origin, actor=principal, target_type="api_key",
                        target_id=kid, details={"name": row.name, "prefix": row.prefix},
                    )

        await asyncio.to_thread(tx)

    async def exchange_api_key(self, *, api_key: str) -> AccessToken:
        """An access token of the key's user (its organization and role now) for a valid, unrevoked key."""
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
                repository.update_api_key(conn, key_id=row.id, last_used_at=datetime.now(UTC))
                return self.sessions.sign(key, user, ttl=ttl)

        issued = await asyncio.to_thread(tx)
        return AccessToken(issued.token, ttl)
