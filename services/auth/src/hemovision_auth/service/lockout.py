"""Sign-in lockout per normalised e-mail address, counted in PostgreSQL (auth.login_attempts), so it
holds across replicas and restarts, and the same for unknown addresses (a lockout says nothing
about whether an account exists).

`threshold` failures within `window_s` lock sign-in for `base_s`; each further lockout doubles it
(up to `max_s`) until a successful sign-in, an UnlockUser, or `memory_s` without a failure. While
locked, even the right password is refused (LockedOut, RESOURCE_EXHAUSTED + retry-after)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from hemovision_auth import repository
from hemovision_auth.settings import Settings


@dataclass(frozen=True)
class Failure:
    """What one failed sign-in did: the failures counted in the window, and the lockout it started."""

    failures: int
    locked_for_s: int = 0  # 0: not locked by this failure
    lockouts: int = 0


@dataclass(frozen=True, kw_only=True)
class LoginThrottle:
    threshold: int
    window_s: int
    base_s: int
    max_s: int
    memory_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(
            threshold=settings.lockout_threshold,
            window_s=settings.lockout_window_s,
            base_s=settings.lockout_base_s,
            max_s=settings.lockout_max_s,
            memory_s=settings.lockout_memory_s,
        )

    @staticmethod
    def seconds_left(locked_until: datetime | None, now: datetime) -> int:
        """Whole seconds (rounded up) until `locked_until`; 0 when not locked."""
        if locked_until is None or locked_until <= now:
            return 0
        return max(1, math.ceil((locked_until - now).total_seconds()))

    def locked_for(self, conn: Connection, *, email: str, now: datetime, for_update: bool = False) -> int:
        row = repository.get_login_attempts(conn, email=email, for_update=for_update)
        return self.seconds_left(row.locked_until if row else None, now)

    def backoff_s(self, lockouts: int) -> int:
        """The length of the `lockouts`-th lockout in a row (1: base_s)."""
        return int(min(self.base_s * 2 ** min(max(lockouts - 1, 0), 30), self.max_s))

    def record_failure(self, conn: Connection, *, email: str, now: datetime) -> Failure:
        """Counts one failed sign-in of `email` (the row is locked for the transaction, so concurrent
        failures on any replica are counted one by one); locks sign-in at the threshold."""
        row = repository.lock_login_attempts(conn, email=email)
        lockouts = row.lockouts
        if row.last_failure_at is not None and now - row.last_failure_at > timedelta(seconds=self.memory_s):
            lockouts = 0
        in_window = row.window_started_at is not None and now - row.window_started_at <= timedelta(seconds=self.window_s)
        failures = row.failures + 1 if in_window else 1
        window_started_at = row.window_started_at if in_window else now
        if failures >= self.threshold:
            lockouts += 1
            locked_for = self.backoff_s(lockouts)
            repository.update_login_attempts(
                conn, email=email, failures=0, window_started_at=None, last_failure_at=now, lockouts=lockouts,
                locked_until=now + timedelta(seconds=locked_for),
            )
            return Failure(failures, locked_for, lockouts)
        repository.update_login_attempts(
            conn, email=email, failures=failures, window_started_at=window_started_at, last_failure_at=now,
            lockouts=lockouts,
        )
        return Failure(failures)
