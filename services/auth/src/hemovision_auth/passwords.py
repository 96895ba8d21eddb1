"""How auth keeps what callers prove themselves with: passwords (policy, argon2id via argon2-cffi)
and random secrets (refresh tokens, API keys, link tokens) as SHA-256.

The policy: 10..256 characters (the minimum is a setting) and not one of the 30,000 most common
passwords of zxcvbn's frequency list (pinned package `zxcvbn`; built from leaked password dumps),
compared case-insensitively. The list is read once per process."""

from __future__ import annotations

import asyncio
import functools
import hashlib

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hemovision_auth.errors import InvalidArgument

MAX_PASSWORD_LENGTH = 256


COMMON_PASSWORD_LIST = "zxcvbn 4.5.0 frequency list 'passwords' (30,000 most common leaked passwords)"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The common-password list, lower-cased; loaded on first use, once per process."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def sha256_hex(secret: str) -> str:
    """The stored form of a random 256-bit secret: high entropy needs no salt and no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, min_length: int = 10) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self.min_length = min_length
        self._common = common_passwords()
        # Verified against when the e-mail is unknown, so both paths cost the same.
        self._dummy = self._hasher.hash("not-a-real-password-just-for-timing")

    def check(self, password: str, field: str = "password") -> None:
        """InvalidArgument unless `password` meets the policy: length, and not a common password."""
        if not password:
            raise InvalidArgument(f"{field} is required")
        if len(password) < self.min_length:
            raise InvalidArgument(f"{field} must be at least {self.min_length} characters long")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidArgument(f"{field} must be at most {MAX_PASSWORD_LENGTH} characters long")
        if password.lower() in self._common:
            raise InvalidArgument(
                f"{field} is one of the most common passwords (found in lists of leaked passwords); choose another"
            )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    # argon2 takes tens of milliseconds of CPU: off the event loop.
    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, password_hash, password)
