"""Settings every gRPC service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class GrpcServiceSettings(BaseSettings):
    """Base settings. Subclass with `model_config = SettingsConfigDict(env_prefix="HV_<SVC>_")`."""

    # populate_by_name: Settings(database_url=...) works beside the HV_DATABASE_URL-style aliases.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 0
    # Seconds in-flight RPCs get to finish on SIGTERM before they are cancelled.
    grace_seconds: float = 10.0
    log_level: str = "INFO"
    # Largest request/response in MiB (10 MB uploads plus protobuf overhead).
    max_message_mb: int = 32
    # Connections are closed (gracefully) after this long so round-robin clients re-resolve
    # DNS and spread over pods added since (Kubernetes scale-out behind a headless Service).
    max_connection_age_s: int = 300
    # Prometheus /metrics port (HV_<SVC>_METRICS_PORT): unset = the topology's
    # (hemovision_contracts.topology), -1 = off. Bound on `host`, apart from the gRPC port.
    metrics_port: int | None = None
