"""Revocation is checked once per request, by the first service that receives the caller's token.

Every service still verifies the token's signature and expiry itself (zero trust between services).
The Redis revocation lookup, though, was repeated by each hop of one request (gateway, inference,
preprocess, history: 4-5 lookups per upload). The service that did the lookup now sends, beside
the token, a proof that it did: `hv-revocation-checked: <unix ms>.<HMAC-SHA256(key, ms + token)>`.
The next service accepts it instead of its own lookup when the HMAC is right and the proof is at
most MAX_AGE_S old — a request's lifetime — and forwards a fresh proof on its own calls.

The key (HV_INTERNAL_KEY, >= 32 bytes, shared by the services of one deployment; `hemovision up`
makes one per run) is what makes a proof unforgeable: a direct gRPC caller, who has no key, always
gets the full check. Without the setting nobody makes or accepts proofs: every hop checks Redis.
A proof is only made for a token this process checked (or accepted a proof for) within MAX_AGE_S,
so a token used later by a background job (a batch worker's cached on-behalf-of token) is checked
again in Redis by the first service it reaches.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict

HEADER = "hv-revocation-checked"
KEY_ENV = "HV_INTERNAL_KEY"
MAX_AGE_S = 30.0
_CHECKED_SIZE = 4096


class RevocationProofs:
    def __init__(self, key: bytes | None, *, max_age_s: float = MAX_AGE_S) -> None:
        if key is not None and len(key) < 32:
            raise ValueError(f"{KEY_ENV} must be at least 32 bytes")
        self.key = key
        self.max_age_s = max_age_s
        self._checked: OrderedDict[str, float] = OrderedDict()  # token -> monotonic time of its check

    @classmethod
    def from_env(cls) -> RevocationProofs:
        raw = os.environ.get(KEY_ENV, "")
        return cls(raw.encode() if raw else None)

    def _mac(self, millis: str, token: str) -> str:
        return hmac.new(self.key or b"", f"{millis}.{token}".encode(), hashlib.sha256).hexdigest()

    def accept(self, token: str, proof: str | None) -> bool:
        """True when `proof` shows this token's revocation was checked less than max_age_s ago."""
        if self.key is None or not proof:
            return False
        millis, _, mac = proof.partition(".")
        try:
            age = time.time() - int(millis) / 1000
        except ValueError:
            return False
        if not -1.0 <= age <= self.max_age_s or not hmac.compare_digest(mac, self._mac(millis, token)):
            return False
        self.note_checked(token)
        return True

    def note_checked(self, token: str) -> None:
        """This process checked (or accepted a proof for) the token's revocation just now."""
        if self.key is None:
            return
        self._checked[token] = time.monotonic()
        self._checked.move_to_end(token)
        if len(self._checked) > _CHECKED_SIZE:
            self._checked.popitem(last=False)

    def make(self, token: str) -> str | None:
        """A proof for an outgoing call, if this process checked the token recently."""
        checked = self._checked.get(token) if self.key is not None else None
        if checked is None or time.monotonic() - checked > self.max_age_s:
            return None
        millis = str(int(time.time() * 1000))
        return f"{millis}.{self._mac(millis, token)}"


# One per process: the verifier records its checks here, bearer_metadata() forwards proofs.
PROOFS = RevocationProofs.from_env()


def configure(key: bytes | None) -> None:
    """Sets the process's key (tests; it normally comes from HV_INTERNAL_KEY) and forgets its checks."""
    if key is not None and len(key) < 32:
        raise ValueError(f"{KEY_ENV} must be at least 32 bytes")
    PROOFS.key = key
    PROOFS._checked.clear()
