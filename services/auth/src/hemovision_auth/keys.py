"""Signing keys: Ed25519, one current, older ones published until their tokens have expired.

Private keys live in auth.signing_keys as PKCS#8 PEM encrypted with
HV_AUTH_KEY_ENCRYPTION_SECRET (cryptography's BestAvailableEncryption); public keys as
SubjectPublicKeyInfo PEM. The KeyStore caches the decrypted current key and reloads it
every `reload_s` seconds, so a rotation on one replica reaches the others.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from sqlalchemy import Engine

from hemovision_auth import repository
from hemovision_tokens import ALGORITHM, TokenError, load_public_key
from hemovision_tokens.keys import PublicKeyType


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey


@dataclass(frozen=True)
class PublishedKey:
    kid: str
    algorithm: str
    public_key_pem: str
    created_at: datetime
    current: bool


def new_key_row(secret: bytes) -> dict:
    private = Ed25519PrivateKey.generate()
    kid = f"{datetime.now(timezone.utc):%Y%m%d}-{uuid.uuid4().hex[:12]}"
    return {
        "kid": kid,
        "algorithm": ALGORITHM,
        "private_key_pem": private.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(secret)
        ).decode(),
        "public_key_pem": private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(),
    }


class KeyStore:
    def __init__(self, engine: Engine, *, secret: bytes, publish_retired_for_s: float, reload_s: float = 30.0) -> None:
        self._engine = engine
        self._secret = secret
        self._publish_retired_for = timedelta(seconds=publish_retired_for_s)
        self._reload_s = reload_s
        self._current: SigningKey | None = None
        self._loaded_at = 0.0
        self._public: dict[str, PublicKeyType] = {}
        self._lock = asyncio.Lock()

    # -- signing ------------------------------------------------------------------------------

    def ensure_current_sync(self) -> str:
        """Creates a key if none is current; returns the current kid."""
        with self._engine.begin() as conn:
            row = repository.current_signing_key(conn)
            if row is None:
                row = new_key_row(self._secret)
                repository.insert_signing_key(conn, **row, current=True)
                return row["kid"]
            return row.kid

    def rotate_sync(self) -> PublishedKey:
        """Makes a brand-new key current; the old one is retired but stays published."""
        row = new_key_row(self._secret)
        with self._engine.begin() as conn:
            repository.retire_current_signing_key(conn, at=datetime.now(timezone.utc))
            repository.insert_signing_key(conn, **row, current=True)
            stored = repository.get_signing_key(conn, kid=row["kid"])
        self._current = None
        return PublishedKey(stored.kid, stored.algorithm, stored.public_key_pem, stored.created_at, True)

    def _load_current_sync(self) -> SigningKey:
        with self._engine.connect() as conn:
            row = repository.current_signing_key(conn)
        if row is None:
            raise RuntimeError("no current signing key: start the server or run `python -m hemovision_auth rotate-key`")
        private = load_pem_private_key(row.private_key_pem.encode(), password=self._secret)
        if not isinstance(private, Ed25519PrivateKey):
            raise RuntimeError(f"signing key {row.kid} is not Ed25519")
        return SigningKey(row.kid, private)

    async def current(self) -> SigningKey:
        if self._current is None or time.monotonic() - self._loaded_at > self._reload_s:
            async with self._lock:
                if self._current is None or time.monotonic() - self._loaded_at > self._reload_s:
                    self._current = await asyncio.to_thread(self._load_current_sync)
                    self._loaded_at = time.monotonic()
        return self._current

    def forget_current(self) -> None:
        self._current = None

    # -- publishing -----------------------------------------------------------------------------

    def published_sync(self) -> list[PublishedKey]:
        since = datetime.now(timezone.utc) - self._publish_retired_for
        with self._engine.connect() as conn:
            rows = repository.published_signing_keys(conn, retired_after=since)
        return [PublishedKey(r.kid, r.algorithm, r.public_key_pem, r.created_at, r.current) for r in rows]

    async def published(self) -> list[PublishedKey]:
        return await asyncio.to_thread(self.published_sync)

    # -- KeyProvider for auth's own TokenVerifier ---------------------------------------------

    async def get_key(self, kid: str) -> PublicKeyType:
        key = self._public.get(kid)
        if key is None:  # one indexed query, far cheaper than the argon2 a Login costs
            keys = await self.published()
            self._public = {k.kid: load_public_key(k.public_key_pem) for k in keys}
            key = self._public.get(kid)
        if key is None:
            raise TokenError("token signed with an unknown key")
        return key

    async def close(self) -> None:  # the engine belongs to the server
        return None
