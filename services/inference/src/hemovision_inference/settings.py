"""InferenceService settings (env prefix HV_INFERENCE_; HV_MODEL_BASE, HV_MODEL_NAME, HV_REDIS_URL shared)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_port
from hemovision_grpc_server import GrpcServiceSettings


class Settings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HV_INFERENCE_")

    port: int = default_port("inference")
    # TF Serving gRPC API: the embedded model server, or a real tensorflow/serving.
    model_server_addr: str = default_addr("model-server")
    # Base path a real TF Serving sees for the model (sent in HandleReloadConfigRequest); "" = its default.
    model_server_base_path: str = ""
    training_addr: str = default_addr("training")
    # AnalyzeImages (the short route) has the preprocess service prepare the caller's images.
    preprocess_addr: str = default_addr("preprocess")
    auth_addr: str = default_addr("auth")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("HV_INFERENCE_REDIS_URL", "HV_REDIS_URL")
    )
    # Where hemovision.json of each version is read (the same volume the model server loads from).
    model_base: str = Field("models", validation_alias=AliasChoices("HV_INFERENCE_MODEL_BASE", "HV_MODEL_BASE"))
    model_name: str = Field("hemovision", validation_alias=AliasChoices("HV_INFERENCE_MODEL_NAME", "HV_MODEL_NAME"))
    # Registry poll period and how long a replaced version stays pinned after a switch.
    reconcile_interval_s: float = 3.0
    drain_seconds: float = 30.0
    # Deadlines: Predict, control calls (status/reload/registry), and the wait for a new version to load.
    predict_timeout_s: float = 10.0
    preprocess_timeout_s: float = 10.0
    control_timeout_s: float = 3.0
    load_timeout_s: float = 300.0
    # Organizations' adapted versions (docs/serving.md, "Routing order"): how many may be pinned
    # beside the platform's, how long one may sit unused before it is unpinned, and how long a cold
    # one may take to load (its own deadline; a request waits at most its own).
    max_org_versions: int = 4
    org_idle_s: float = 600.0
    org_load_timeout_s: float = 60.0
    max_images: int = 64
    # Safe rollouts (docs/serving.md): shadow runs of the candidate in flight at once per replica
    # (more are dropped, never queued), and how often live statistics are added to Redis.
    shadow_max_inflight: int = 2
    rollout_stats_flush_s: float = 1.0
    # Back the model's OOD score with the input plausibility check (input_check.py, ood_reference.json).
    input_check: bool = True
    # Verify bearer tokens (hemovision_tokens); off only for local tools.
    require_auth: bool = True
