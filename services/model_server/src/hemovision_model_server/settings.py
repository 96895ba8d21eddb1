"""Model server settings (env prefix HV_MODEL_SERVER_; HV_MODEL_BASE / HV_MODEL_NAME shared)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from hemovision_grpc_server import GrpcServiceSettings


class ModelServerSettings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HV_MODEL_SERVER_", env_file=".env", extra="ignore", populate_by_name=True)

    port: int = 8500
    # TF Serving REST API + /monitoring/prometheus/metrics; -1 disables it.
    rest_port: int = 8501
    model_base: str = Field("models", validation_alias=AliasChoices("HV_MODEL_SERVER_MODEL_BASE", "HV_MODEL_BASE"))
    model_name: str = Field("hemovision", validation_alias=AliasChoices("HV_MODEL_SERVER_MODEL_NAME", "HV_MODEL_NAME"))
    # Initial version policy until a HandleReloadConfigRequest replaces it: "latest" (num_versions) or "all".
    version_policy: str = "latest"
    num_versions: int = 1
    # How often <model_base>/<name>/ is scanned for versions.
    poll_interval_s: float = 1.0
    # How long a version that is no longer wanted stays loaded (and callable by explicit version).
    drain_seconds: float = 30.0
    # Failed loads are retried after initial * 2^n seconds, at most max.
    load_retry_initial_s: float = 1.0
    load_retry_max_s: float = 60.0
    # A version needs (SavedModel bytes x factor + reserve) of available memory to be loaded.
    memory_factor: float = 4.0
    memory_reserve_mb: int = 256
    # Server-side batching (TF Serving's batching_parameters).
    enable_batching: bool = True
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 8
    # Dispatch at once when a batch thread is idle (false = TF Serving's wait-for-timeout).
    dispatch_when_idle: bool = True
    # Comma-separated padded batch sizes; "" = 1,2,3,4,6,8,12,... up to max_batch_size; "none" = no padding.
    allowed_batch_sizes: str = ""

    # TensorFlow's own thread pools, sized for 2 cores: one thread per op (the batch threads
    # already use both cores; more intra-op threads oversubscribe them), but two inter-op threads
    # so that independent ops run side by side, e.g. the shipped ensemble's two members.
    # Measurements: docs/serving.md.
    intra_op_threads: int = 1
    inter_op_threads: int = 2
    # Niceness of the loader thread (0 = same priority as serving; see manager._load_and_warm).
    load_nice: int = 0
    # Run assets.extra/tf_serving_warmup_requests before a version takes traffic.
    warmup: bool = True

    def batch_sizes(self) -> tuple[int, ...]:
        if self.allowed_batch_sizes.strip().lower() == "none":
            return ()
        if self.allowed_batch_sizes.strip():
            sizes = tuple(sorted({int(v) for v in self.allowed_batch_sizes.split(",") if v.strip()}))
        else:  # 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ...: at most 1/3 of a batch is padding
            sizes = tuple(
                v
                for i in range(self.max_batch_size.bit_length())
                for v in (2**i, 3 * 2 ** (i - 1) if i else 1)
                if v < self.max_batch_size
            )
        return tuple(sorted({*sizes, self.max_batch_size}))
