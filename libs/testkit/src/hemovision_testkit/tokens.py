"""TokenFactory: mint real tokens in tests with an own key pair (no auth service needed).

    from hemovision_testkit.tokens import TokenFactory

    factory = TokenFactory()
    token = factory.issue(user_id="u1", organization_id="o1", role="lab_user")
    verifier = factory.verifier(redis_url=redis_url)
    server = await create_server(..., interceptors=[TokenInterceptor(verifier, PUBLIC)])
    await stub.Get(req, metadata=bearer_metadata(token))

It signs with hemovision_tokens.issue_access_token, the function auth uses, so the tokens have
auth's format; only the key pair and the (static) key provider are the test's own.
"""

from __future__ import annotations

import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hemovision_contracts import LAB_USER, is_platform_role
from hemovision_tokens import AUDIENCE, ISSUER, StaticKeyProvider, TokenVerifier, issue_access_token


class TokenFactory:
    """An Ed25519 key pair with a static key provider; issues tokens in auth's format."""

    def __init__(self, kid: str | None = None, *, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.kid = kid or f"test-{uuid.uuid4().hex[:8]}"
        self.private_key = Ed25519PrivateKey.generate()
        self.public_pem = self.private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        self.issuer = issuer
        self.audience = audience
        self.key_provider = StaticKeyProvider({self.kid: self.public_pem})

    def issue(
        self,
        *,
        user_id: str | None = None,
        organization_id: str | None = None,
        role: str = LAB_USER,
        email: str = "user@example.org",
        ttl: float = 900,
        act: str | None = None,
        email_verified: bool = True,
        now: float | None = None,
    ) -> str:
        """A signed access token; user/organization ids default to fresh UUIDs
        (organization "" for the platform roles). A negative ttl gives an expired token."""
        if organization_id is None:
            organization_id = "" if is_platform_role(role) else str(uuid.uuid4())
        return issue_access_token(
            self.private_key,
            self.kid,
            user_id=user_id or str(uuid.uuid4()),
            organization_id=organization_id,
            role=role,
            email=email,
            ttl=ttl,
            act=act,
            email_verified=email_verified,
            issuer=self.issuer,
            audience=self.audience,
            now=now,
        ).token

    def verifier(self, redis_url: str | None = None, **kwargs) -> TokenVerifier:
        return TokenVerifier(self.key_provider, redis_url=redis_url, issuer=self.issuer, audience=self.audience, **kwargs)
