"""Settings of the gateway (env prefix HV_GATEWAY_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_port

MB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the gateway (HTTP server, batch worker, CLI) reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="HV_GATEWAY_", env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = default_port("gateway")
    log_level: str = "INFO"

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

    # Public base URL, used in links the CLI prints.
    public_url: str = "http://127.0.0.1:8000"

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def backend_url(self) -> str:
        return self.celery_result_backend or self.redis_url
