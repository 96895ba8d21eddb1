"""Preprocess service settings (env prefix HV_PREPROCESS_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_port
from hemovision_grpc_server import GrpcServiceSettings


class Settings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HV_PREPROCESS_")

    port: int = default_port("preprocess")
    auth_addr: str = default_addr("auth")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("HV_PREPROCESS_REDIS_URL", "HV_REDIS_URL")
    )
    # Upload limits enforced before any pixel is decoded.
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # Images decoded and preprocessed at once; more wait (keeps memory bounded on 2 cores).
    max_concurrency: int = 4
    thumbnail_size: int = 96
    # Off only in unit tests that exercise the pixel path without an auth service.
    require_token: bool = True
