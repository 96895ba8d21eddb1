"""Settings of the training service and its Celery worker (env prefix HV_TRAINING_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from hemovision_contracts.topology import default_addr, default_port, default_worker_metrics_port
from hemovision_grpc_server import GrpcServiceSettings

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/hemovision"


class Settings(GrpcServiceSettings):
    """Everything the training service (server, worker, CLI) reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="HV_TRAINING_")

    port: int = default_port("training")
    # The training worker's /metrics (its Celery task RED, hemovision_telemetry.celery_metrics); -1 = off.
    worker_metrics_port: int = default_worker_metrics_port("training-worker")
    # HV_TRAINING_DATABASE_URL overrides the shared HV_DATABASE_URL. The server, the worker and
    # register-existing sign in through it: in every deployment the restricted runtime role
    # hemovision_training_app (migration 0005).
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("HV_TRAINING_DATABASE_URL", "HV_DATABASE_URL"),
    )
    # The connection `migrate` uses (the schema owner). Empty: the database_url. Set it when the
    # server and worker run as the runtime role.
    migrate_database_url: str = ""
    # Celery broker + progress pub/sub (channel hv:training:job:<id>).
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("HV_TRAINING_REDIS_URL", "HV_REDIS_URL"),
    )
    # Where published SavedModels live: <model_base>/<model_name>/<version>/.
    model_base: str = Field(default="models", validation_alias=AliasChoices("HV_TRAINING_MODEL_BASE", "HV_MODEL_BASE"))
    model_name: str = Field(default="hemovision", validation_alias=AliasChoices("HV_TRAINING_MODEL_NAME", "HV_MODEL_NAME"))
    # Auth service (public keys for token verification).
    auth_addr: str = default_addr("auth")
    # History service (audit events). Empty = only the local training.audit_log.
    history_addr: str = default_addr("history")
    history_timeout_s: float = 3.0
    db_pool_size: int = 5

    # Quality gate: a candidate's ECE (15 bins, test split) must not exceed this.
    ece_limit: float = 0.01

    # Worker liveness: the worker touches heartbeat_at at least this often (and every epoch) ...
    heartbeat_interval_s: float = 30.0
    # ... and the reaper fails a running job whose heartbeat is older than this.
    heartbeat_timeout_s: float = 300.0
    reaper_interval_s: float = 15.0
    # WatchTrainingJob re-reads the job at least this often even without a pub/sub message.
    watch_poll_s: float = 5.0

    # Per-job working directories (checkpoints, logs, report) and the preprocessed-data cache.
    work_dir: str = "var/training"

    # Extra TrainConfig fields for every job run by this worker, as JSON (e.g. a tiny
    # architecture for smoke tests: {"widths": [8, 16, 16, 16], "stem_width": 0}).
    train_overrides: dict = {}

    # A message received by a worker that died unacknowledged is redelivered after this long
    # (Redis broker visibility timeout). The task only starts queued jobs, so a redelivery of a
    # job that had started is a no-op.
    broker_visibility_timeout_s: float = 24 * 3600.0

    # Adaptation ("adapt to our lab"): PBC data for replay and the PBC val check, on the training host.
    replay_data_dir: str = "../shared/data/pbc_128"
    # Deadline for reading an organization's reviewed cells from history at start.
    cells_timeout_s: float = 120.0
    # Extra AdaptConfig fields for every adaptation run by this worker, as JSON (e.g. one short
    # epoch for smoke tests: {"epochs": 1, "lab_samples": 32}).
    adapt_overrides: dict = {}

    # Celery queue for training tasks.
    queue: str = "training"
