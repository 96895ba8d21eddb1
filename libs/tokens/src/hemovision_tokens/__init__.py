"""Identity between HemoVision services (see docs/engineering.md "Identity between services").

    verifier = TokenVerifier(AuthKeyProvider(settings.auth_addr), redis_url=settings.redis_url)
    interceptor = TokenInterceptor(verifier, public_methods={"/hemovision.x.v1.XService/Public"})
    ... in a servicer:  principal = current_principal(); require_role(*hemovision_contracts.PLATFORM_ROLES)
    ... outgoing call:  await stub.Get(req, metadata=bearer_metadata(principal.token), timeout=5)
"""

from hemovision_tokens.interceptor import (
    ALWAYS_PUBLIC_PREFIXES,
    TokenInterceptor,
    bearer_metadata,
    check_role,
    current_principal,
    optional_principal,
    require_role,
    reset_principal,
    set_principal,
)
from hemovision_tokens.issuing import IssuedToken, issue_access_token
from hemovision_tokens.keys import AuthKeyProvider, KeyProvider, StaticKeyProvider, load_public_key
from hemovision_tokens.principal import (
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    Principal,
    TokenError,
)
from hemovision_tokens.revocation import jti_key, revoke_jti, revoke_user_tokens, user_key
from hemovision_tokens.verifier import TokenVerifier

__all__ = [
    "ALGORITHM",
    "ALWAYS_PUBLIC_PREFIXES",
    "AUDIENCE",
    "ISSUER",
    "AuthKeyProvider",
    "IssuedToken",
    "KeyProvider",
    "Principal",
    "StaticKeyProvider",
    "TokenError",
    "TokenInterceptor",
    "TokenVerifier",
    "bearer_metadata",
    "check_role",
    "current_principal",
    "issue_access_token",
    "jti_key",
    "load_public_key",
    "optional_principal",
    "require_role",
    "reset_principal",
    "revoke_jti",
    "revoke_user_tokens",
    "set_principal",
    "user_key",
]
