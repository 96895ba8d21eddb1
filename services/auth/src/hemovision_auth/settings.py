"""Settings of the auth service (env prefix HV_AUTH_; HV_DATABASE_URL / HV_REDIS_URL shared)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_port
from hemovision_grpc_server import GrpcServiceSettings

# The `act` of the service token auth signs for itself (history accepts AppendAuditEvents from it);
# no on-behalf-of credential may carry this id.
SELF_SERVICE_ID = "auth"
_DEV_KEY_SECRET = "development-only-key-encryption-secret"


class Settings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HV_AUTH_")

    port: int = default_port("auth")
    # "development" allows built-in secrets; anything else requires them to be set.
    environment: Literal["development", "test", "production"] = "development"

    # The server (and create-admin, rotate-key) signs in through this URL: in every deployment
    # the restricted runtime role hemovision_auth_app (migration 0003).
    database_url: str = Field(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/hemovision",
        validation_alias=AliasChoices("HV_AUTH_DATABASE_URL", "HV_DATABASE_URL", "database_url"),
    )
    # The connection `migrate` uses (the schema owner). Empty: the database_url. Set it when the
    # server runs as the runtime role.
    migrate_database_url: str = ""
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("HV_AUTH_REDIS_URL", "HV_REDIS_URL", "redis_url")
    )

    # Tokens
    issuer: str = "hemovision-auth"
    audience: str = "hemovision"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    api_key_token_ttl_s: int = 900
    obo_token_ttl_s: int = 300
    # How long verifiers may cache GetPublicKeys.
    public_keys_max_age_s: int = 300
    # Encrypts the signing keys' private PEMs in the database (PKCS#8, BestAvailableEncryption).
    key_encryption_secret: str = ""
    # "id:secret,id2:secret2": callers allowed to use IssueOnBehalfOfToken.
    service_credentials: str = ""

    # Passwords (argon2id). Defaults are argon2-cffi's RFC 9106 "low memory" profile.
    password_min_length: int = 10
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4

    # Sign-in lockout per normalised e-mail (docs/auth.md "Lockout"): after `lockout_threshold`
    # failures within `lockout_window_s`, sign-in is refused for lockout_base_s, doubling with each
    # further lockout up to lockout_max_s; the doubling is forgotten after lockout_memory_s without a failure.
    lockout_threshold: int = Field(5, ge=1)
    lockout_window_s: int = Field(900, ge=1)
    lockout_base_s: int = Field(60, ge=1)
    lockout_max_s: int = Field(3600, ge=1)
    lockout_memory_s: int = Field(24 * 3600, ge=1)

    # Audit events: written to auth.audit_outbox, forwarded to history's AppendAuditEvents.
    history_addr: str = default_addr("history")
    audit_forward: bool = True
    audit_forward_batch: int = Field(100, ge=1, le=500)  # AppendAuditEvents takes at most 500
    audit_forward_interval_s: float = Field(1.0, gt=0)  # poll for new events when idle
    audit_forward_timeout_s: float = Field(5.0, gt=0)  # deadline of each AppendAuditEvents call
    audit_retry_base_s: float = Field(1.0, gt=0)  # backoff of a failed batch, doubling per attempt
    audit_retry_max_s: float = Field(300.0, gt=0)
    audit_retention_s: int = Field(7 * 24 * 3600, ge=3600)  # forwarded rows are deleted after this
    # The service token auth signs for itself (act="auth") to call history.
    service_token_ttl_s: int = Field(300, ge=60)

    # E-mail
    require_email_verification: bool = False
    public_base_url: str = "http://127.0.0.1:8000"
    mail_backend: Literal["smtp", "log"] = "log"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout_s: float = 10.0
    mail_sender: str = "HemoVision <no-reply@hemovision.local>"
    invitation_ttl_s: int = 7 * 24 * 3600
    email_verification_ttl_s: int = 48 * 3600
    password_reset_ttl_s: int = 3600

    @model_validator(mode="after")
    def _secrets_outside_development(self) -> Settings:
        if self.environment != "development":
            missing = []
            if not self.key_encryption_secret:
                missing.append("HV_AUTH_KEY_ENCRYPTION_SECRET")
            if not self.service_credentials:
                missing.append("HV_AUTH_SERVICE_CREDENTIALS")
            if missing:
                raise ValueError(f"{', '.join(missing)} must be set outside development")
        if SELF_SERVICE_ID in self.service_credential_map():  # also validates the format
            raise ValueError(f"HV_AUTH_SERVICE_CREDENTIALS: '{SELF_SERVICE_ID}' is reserved for auth's own service token")
        return self

    @property
    def key_secret(self) -> bytes:
        return (self.key_encryption_secret or _DEV_KEY_SECRET).encode()

    def service_credential_map(self) -> dict[str, str]:
        creds: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.service_credentials.split(","))):
            service_id, sep, secret = item.partition(":")
            if not sep or not service_id or not secret:
                raise ValueError("HV_AUTH_SERVICE_CREDENTIALS must look like 'batch-worker:secret,other:secret'")
            creds[service_id] = secret
        return creds
