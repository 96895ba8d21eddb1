"""Settings of the history service (env prefix HV_HISTORY_)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_port
from hemovision_grpc_server import GrpcServiceSettings

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/hemovision"


class Settings(GrpcServiceSettings):
    """Everything the history service reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="HV_HISTORY_")

    port: int = default_port("history")
    # HV_HISTORY_DATABASE_URL overrides the shared HV_DATABASE_URL.
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("HV_HISTORY_DATABASE_URL", "HV_DATABASE_URL"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("HV_HISTORY_REDIS_URL", "HV_REDIS_URL"),
    )
    # Auth service (public keys for token verification).
    auth_addr: str = default_addr("auth")
    # >= the default thread pool (cores + 4) that runs the queries: a smaller pool opens and closes an
    # overflow connection per request under load.
    db_pool_size: int = 8

    # Storage policy: store the model-input-size image and its heatmap (never the original upload).
    store_images: bool = True
    # Stored images and heatmaps older than this many days are purged; 0 keeps them forever. The
    # platform default: an organization's retention policy (retention_policies) overrides it.
    retention_days: int = Field(default=0, ge=0)
    # Audit events older than this many days are deleted by `purge` (as the audit retention role
    # only); 0 keeps them forever.
    audit_retention_days: int = Field(default=400, ge=0)
    # The connection `purge` deletes audit events through (it runs `SET LOCAL ROLE
    # hemovision_audit_retention`, so this URL signs in as that role or a member of it). Empty: the
    # database_url (the development stack, where the migrating owner is a member).
    retention_database_url: str = ""
    # The connection `migrate` uses (the schema owner). Empty: the database_url. Set it when the
    # server runs as the restricted runtime role hemovision_history_app.
    migrate_database_url: str = ""
    # Services whose own tokens (the `act` claim) may call AppendAuditEvents, comma-separated.
    audit_append_services: str = "auth,training"

    @property
    def audit_append_service_set(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.audit_append_services.split(",") if s.strip())

    # Blob store: "local" (a directory) or "s3" (any S3-compatible endpoint; needs the `s3` extra).
    blob_backend: Literal["local", "s3"] = "local"
    blob_root: str = "var/blobs"
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_prefix: str = ""
