"""Settings of the gateway (env prefix HV_GATEWAY_)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_metrics_port, default_port, default_worker_metrics_port

MB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the gateway (HTTP server, batch worker, CLI) reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="HV_GATEWAY_", env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = default_port("gateway")
    log_level: str = "INFO"
    # Prometheus /metrics on its own port (never behind the ingress); -1 = off.
    metrics_port: int = default_metrics_port("gateway")
    # The batch worker's /metrics (its Celery task RED, hemovision_telemetry.celery_metrics); -1 = off.
    worker_metrics_port: int = default_worker_metrics_port("gateway-worker")

    # Peers (host:port).
    auth_addr: str = default_addr("auth")
    inference_addr: str = default_addr("inference")
    history_addr: str = default_addr("history")
    reports_addr: str = default_addr("reports")
    training_addr: str = default_addr("training")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("HV_GATEWAY_REDIS_URL", "HV_REDIS_URL"),
    )

    # The gateway's Redis pool (revocation lookups, rate limits, idempotency): at most this many
    # connections; a command that finds them all busy waits up to redis_pool_timeout_s for one, then
    # answers 429 "busy" (an internal limit, never reported as Redis being down).
    redis_max_connections: int = Field(default=100, ge=1)
    redis_pool_timeout_s: float = Field(default=2.0, gt=0)

    # Deadlines (seconds) for outgoing calls; inference/explain and PDF rendering get longer ones.
    rpc_timeout_s: float = 10.0
    inference_timeout_s: float = 30.0
    reports_timeout_s: float = 30.0

    # Upload limits.
    max_image_bytes: int = 10 * MB
    max_batch_bytes: int = 200 * MB
    max_batch_items: int = 500
    # ZIP safety.
    zip_max_entries: int = 1000
    zip_max_total_uncompressed: int = 500 * MB
    zip_max_ratio: float = 100.0

    # Where batch uploads are kept (var/uploads/<org>/<batch>/).
    upload_dir: str = "var/uploads"

    # Rate limit: requests per window per user (or per client IP when anonymous).
    rate_limit_requests: int = 600
    rate_limit_window_s: int = 60
    # Stricter limit for anonymous auth endpoints (login/register/reset) per IP.
    rate_limit_auth_requests: int = 60

    # Concurrent uploads of one caller share one AnalyzeImages and one history call of at most
    # this many items (1 = every upload its own calls).
    coalesce_max_items: int = Field(default=32, ge=1, le=64)
    # Groups of one caller running at once, per stage (docs/serving.md, benchmarks): what waits
    # meanwhile forms the next, bigger group instead of competing for the same cores.
    coalesce_analyze_in_flight: int = Field(default=1, ge=1, le=16)
    coalesce_record_in_flight: int = Field(default=1, ge=1, le=16)
    # How long Idempotency-Key answers are kept.
    idempotency_ttl_s: int = 24 * 3600

    # Service credential used by batch workers to get on-behalf-of tokens from auth.
    service_id: str = "gateway-batch-worker"
    service_secret: str = Field(
        default="dev-service-secret",
        validation_alias=AliasChoices("HV_GATEWAY_SERVICE_SECRET", "HV_SERVICE_SECRET"),
    )

    # Celery (batch worker). Defaults to the same Redis.
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    # Run batch items inline in the API process instead of through Celery (tests, tiny setups).
    batch_inline: bool = False
    # Seconds after which an unacknowledged batch message (its worker died) is delivered again.
    batch_visibility_timeout_s: int = 120
    # How often one gateway process looks for batch items whose broker message was lost (a worker
    # killed between kombu's BRPOP and its unacked bookkeeping); 0 = never. A batch is looked at
    # once it has been untouched for 2 x batch_visibility_timeout_s.
    batch_sweep_interval_s: int = Field(default=30, ge=0)

    # Public base URL, used in links the CLI prints. Its origin is also accepted as the Origin of
    # the browser's cookie-authenticated calls (besides the request's own Host).
    public_url: str = "http://127.0.0.1:8000"

    # Reverse proxies (CIDRs, comma-separated or a JSON list) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed. Empty: nobody's; the client is the TCP peer, and
    # "served over TLS" means the gateway itself terminated TLS (docs/api.md "Client IP").
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long the browser keeps its refresh-token cookie (match auth's refresh_token_ttl_s).
    session_cookie_max_age_s: int = Field(default=30 * 24 * 3600, ge=60)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value):
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                value = json.loads(value)
            else:
                value = [part for part in value.replace(" ", ",").split(",") if part]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or CIDR: {cidr!r}") from None
        return [cidr.strip() for cidr in value]

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def backend_url(self) -> str:
        return self.celery_result_backend or self.redis_url
