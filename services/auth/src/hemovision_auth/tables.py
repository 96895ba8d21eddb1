"""The auth schema: SQLAlchemy Core tables (the migrations in migrations/versions create them)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    func,
)

from hemovision_contracts import ORGANIZATION_ROLES, ROLES

SCHEMA = "auth"
# The runtime role the server signs in as (migration 0003 creates and grants it; only `migrate`
# signs in as the schema owner). docs/decisions.md 55.
AUTH_APP_ROLE = "hemovision_auth_app"


def _role_in(roles: tuple[str, ...]) -> str:
    """The CHECK of a role column (migration 0001 wrote the same list out)."""
    return "role IN (" + ", ".join(f"'{role}'" for role in roles) + ")"


metadata = MetaData(schema=SCHEMA)

organizations = Table(
    "organizations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("uq_organizations_name_lower", func.lower(organizations.c.name), unique=True)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-cased
    Column("password_hash", Text, nullable=False),
    # NULL for platform roles created without an organization (the first platform_admin).
    Column("organization_id", Uuid, ForeignKey("auth.organizations.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("role", String(32), nullable=False),
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("email_verified", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("password_changed_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(_role_in(ROLES), name="ck_users_role"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("auth.users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("family_id", Uuid, nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 hex of the opaque token
    # The access token issued with this refresh token, revoked in Redis when the family is.
    Column("access_jti", String(64), nullable=True, index=True),
    Column("access_expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),  # set when rotated
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    # PKCS#8 PEM encrypted with HV_AUTH_KEY_ENCRYPTION_SECRET (BestAvailableEncryption).
    Column("private_key_pem", Text, nullable=False),
    Column("public_key_pem", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("current", Boolean, nullable=False, server_default="false"),
    Column("retired_at", DateTime(timezone=True), nullable=True),
)
# At most one key signs new tokens.
Index("uq_signing_keys_one_current", signing_keys.c.current, unique=True, postgresql_where=signing_keys.c.current)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("auth.users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),  # SHA-256 hex
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("organization_id", Uuid, ForeignKey("auth.organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("email", String(320), nullable=False),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("invited_by", Uuid, ForeignKey("auth.users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(_role_in(ORGANIZATION_ROLES), name="ck_invitations_role"),
)

email_tokens = Table(
    "email_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("auth.users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("purpose", String(16), nullable=False),  # verify | reset
    Column("email", String(320), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("purpose IN ('verify', 'reset')", name="ck_email_tokens_purpose"),
)

# Failed sign-ins per normalised e-mail, known or not (a lockout must not reveal an account).
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("failures", Integer, nullable=False, server_default="0"),  # in the current window
    Column("window_started_at", DateTime(timezone=True), nullable=True),
    Column("last_failure_at", DateTime(timezone=True), nullable=True),
    Column("lockouts", Integer, nullable=False, server_default="0"),  # in a row: doubles the backoff
    Column("locked_until", DateTime(timezone=True), nullable=True),
)

# A sign-in session: one refresh-token family (id = refresh_tokens.family_id), with its origin.
sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("auth.users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("client_ip", String(64), nullable=False, server_default=""),
    Column("user_agent", String(256), nullable=False, server_default=""),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Audit events, written in the transaction of the change they record and forwarded to history's
# AppendAuditEvents (id = the event id there, so redelivery is idempotent).
audit_outbox = Table(
    "audit_outbox",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("action", String(64), nullable=False),
    Column("organization_id", String(64), nullable=False, server_default=""),
    Column("user_id", String(64), nullable=False, server_default=""),  # the actor; "" when unknown
    Column("target_type", String(32), nullable=False, server_default=""),
    Column("target_id", String(64), nullable=False, server_default=""),
    Column("details_json", Text, nullable=False, server_default="{}"),
    Column("client_ip", String(64), nullable=False, server_default=""),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text, nullable=True),
    Column("forwarded_at", DateTime(timezone=True), nullable=True, index=True),
)
Index(
    "ix_auth_audit_outbox_pending",
    audit_outbox.c.next_attempt_at,
    postgresql_where=audit_outbox.c.forwarded_at.is_(None),
)
