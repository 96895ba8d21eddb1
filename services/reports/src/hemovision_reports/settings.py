"""Settings of the reports service (env prefix HV_REPORTS_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_port
from hemovision_grpc_server import GrpcServiceSettings


class Settings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HV_REPORTS_")

    port: int = default_port("reports")
    # Where the predictions, batches and stored images come from.
    history_addr: str = default_addr("history")
    # Auth: public keys for token verification, and GetMe for the organization's name.
    auth_addr: str = default_addr("auth")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("HV_REPORTS_REDIS_URL", "HV_REDIS_URL"),
    )
    # Deadline of every call to history / auth, seconds.
    call_timeout_s: float = 10.0
    # At most this many flagged-cell thumbnails in a batch report.
    max_flagged_thumbnails: int = 240
