"""Where verifiers get public keys: from auth over gRPC (cached), or a static map (tests, offline)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from hemovision_tokens.principal import TokenError

log = logging.getLogger(__name__)

PublicKeyType = Ed25519PublicKey


def load_public_key(pem: str | bytes) -> PublicKeyType:
    """Parses a SubjectPublicKeyInfo PEM into a key object PyJWT accepts."""
    data = pem.encode() if isinstance(pem, str) else pem
    key = load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


class KeyProvider(Protocol):
    """Gives the public key for a `kid`; raises TokenError if it is unknown."""

    async def get_key(self, kid: str) -> PublicKeyType: ...


class StaticKeyProvider:
    """A fixed {kid: PEM} map."""

    def __init__(self, keys: dict[str, str | bytes]) -> None:
        self._keys = {kid: load_public_key(pem) for kid, pem in keys.items()}

    def add(self, kid: str, pem: str | bytes) -> None:
        self._keys[kid] = load_public_key(pem)

    async def get_key(self, kid: str) -> PublicKeyType:
        try:
            return self._keys[kid]
        except KeyError:
            raise TokenError("token signed with an unknown key") from None

    async def close(self) -> None:
        return None


class AuthKeyProvider:
    """Fetches AuthService.GetPublicKeys; caches for the answer's max_age_seconds.

    An unknown `kid` triggers a refetch (auth rotated its key), at most once per
    `min_refetch_interval` seconds so that garbage tokens cannot hammer auth.
    One channel, created on first use and reused; every call carries a deadline.
    """

    def __init__(
        self,
        auth_addr: str,
        *,
        timeout: float = 5.0,
        default_max_age: float = 300.0,
        min_refetch_interval: float = 5.0,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self._addr = auth_addr
        self._timeout = timeout
        self._default_max_age = default_max_age
        self._min_refetch = min_refetch_interval
        self._channel = channel
        self._own_channel = channel is None
        self._keys: dict[str, PublicKeyType] = {}
        self._expires = 0.0
        self._last_fetch = float("-inf")
        self._lock = asyncio.Lock()
        self.issuer: str | None = None
        self.audience: str | None = None

    def _stub(self):  # imported lazily: the generated package is only needed here
        from hemovision.auth.v1 import auth_pb2_grpc

        if self._channel is None:
            from hemovision_grpc_server import create_channel

            self._channel = create_channel(self._addr)
        return auth_pb2_grpc.AuthServiceStub(self._channel)

    async def refresh(self) -> None:
        """Fetches the key set now."""
        from hemovision.auth.v1 import auth_pb2

        self._last_fetch = time.monotonic()
        try:
            reply = await self._stub().GetPublicKeys(auth_pb2.GetPublicKeysRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            log.warning("could not fetch public keys from auth", extra={"addr": self._addr, "code": exc.code().name})
            raise
        keys: dict[str, PublicKeyType] = {}
        for key in reply.keys:
            try:
                keys[key.kid] = load_public_key(key.public_key_pem)
            except ValueError:
                log.warning("skipping unusable public key", extra={"kid": key.kid})
        self._keys = keys
        self.issuer = reply.issuer or None
        self.audience = reply.audience or None
        max_age = reply.max_age_seconds or self._default_max_age
        self._expires = time.monotonic() + max_age

    async def get_key(self, kid: str) -> PublicKeyType:
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now < self._expires:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            now = time.monotonic()
            stale = now >= self._expires
            if key is None or stale:
                if stale or now - self._last_fetch >= self._min_refetch:
                    try:
                        await self.refresh()
                    except grpc.aio.AioRpcError:
                        if key is None:
                            from hemovision_grpc_server import Unavailable

                            raise Unavailable("auth service unavailable to verify the token") from None
                        return key  # serve the stale key rather than fail every request
                key = self._keys.get(kid)
        if key is None:
            raise TokenError("token signed with an unknown key")
        return key

    async def close(self) -> None:
        if self._channel is not None and self._own_channel:
            await self._channel.close()
            self._channel = None
