"""Revocation checked once per request: proofs between services (revocation_proof.py)."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from hemovision_testkit.tokens import TokenFactory
from hemovision_tokens import TokenError, bearer_metadata, revoke_jti, revocation_proof
from hemovision_tokens.revocation_proof import HEADER, RevocationProofs

KEY = b"k" * 32


@pytest.fixture
def proofs():
    revocation_proof.configure(KEY)
    yield revocation_proof.PROOFS
    revocation_proof.configure(None)


def test_a_proof_is_bound_to_key_token_and_time():
    issuer, other = RevocationProofs(KEY), RevocationProofs(b"x" * 32)
    assert issuer.make("tok") is None  # never checked here: nothing to vouch for
    issuer.note_checked("tok")
    proof = issuer.make("tok")
    receiver = RevocationProofs(KEY)
    assert receiver.accept("tok", proof)
    assert not receiver.accept("another token", proof)
    assert not other.accept("tok", proof)  # no key, no proof
    assert not RevocationProofs(None).accept("tok", proof)
    millis, _, mac = proof.partition(".")
    assert not receiver.accept("tok", f"{int(millis) + 1}.{mac}")  # the time is signed too
    old = str(int((time.time() - 31) * 1000))
    assert not receiver.accept("tok", f"{old}.{receiver._mac(old, 'tok')}")  # stale
    for junk in ("", "nonsense", "12.", ".abc"):
        assert not receiver.accept("tok", junk)
    with pytest.raises(ValueError):
        RevocationProofs(b"short")


async def test_one_lookup_per_request_and_a_revoked_token_still_fails(proofs, redis_url, monkeypatch):
    factory = TokenFactory()
    edge, inner = factory.verifier(redis_url=redis_url), factory.verifier(redis_url=redis_url)
    token = factory.issue(role="lab_user")
    lookups = []
    original = type(inner)._check_revocation

    async def counting(self, principal):
        lookups.append(self)
        return await original(self, principal)

    monkeypatch.setattr(type(inner), "_check_revocation", counting)
    principal = await edge.verify(token)  # the edge checks Redis ...
    md = dict(bearer_metadata(token))
    assert md["authorization"] == f"Bearer {token}" and HEADER in md
    await inner.verify(token, revocation_proof=md[HEADER])  # ... the next hop does not
    assert lookups == [edge]
    await inner.verify(token)  # without a proof, it does
    assert lookups == [edge, inner]

    r = aioredis.Redis.from_url(redis_url)
    await revoke_jti(r, principal.jti, ttl=60)
    await r.aclose()
    with pytest.raises(TokenError, match="revoked"):
        await edge.verify(token)  # the next request's first hop refuses it
    forged = f"{int(time.time() * 1000)}.{'0' * 64}"
    with pytest.raises(TokenError, match="revoked"):
        await inner.verify(token, revocation_proof=forged)  # a forged proof buys nothing
    # the signature is checked whatever the proof says
    with pytest.raises(TokenError):
        await inner.verify(token[:-4] + "AAAA", revocation_proof=md[HEADER])


def test_no_key_no_proofs():
    revocation_proof.configure(None)
    revocation_proof.PROOFS.note_checked("tok")
    assert bearer_metadata("tok") == (("authorization", "Bearer tok"),)
