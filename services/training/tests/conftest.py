"""Fixtures the training service's tests share: the migrated schema on a real PostgreSQL, a
clean registry per test, tokens from an own key pair, and the in-process server with an audit
sink behind our own interface.

The server and the worker run as they run in every deployment: signed in as the restricted
runtime role hemovision_training_app (`runtime_url` / `runtime_engine`, migration 0005), so every
test proves its privileges suffice; `engine` (and `clean`) is the schema owner's (the migrations,
and tests that arrange or inspect rows around the service)."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))

from hemovision.training.v1 import training_pb2_grpc
from hemovision_database import as_role, create_db_engine, run_migrations
from hemovision_testkit.tokens import TokenFactory
from hemovision_training.__main__ import MIGRATIONS_DIR
from hemovision_training.server import create_server
from hemovision_training.settings import Settings
from hemovision_training.tables import TRAINING_APP_ROLE
from training_fakes import RecordingSink  # noqa: E402


@pytest.fixture(scope="module")
def engine(postgres_url):
    run_migrations(migrations_dir=MIGRATIONS_DIR, url=postgres_url, schema="training")
    eng = create_db_engine(postgres_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def runtime_url(engine, postgres_url) -> str:
    """The migrated database as the runtime role the server and the worker sign in as."""
    return as_role(postgres_url, TRAINING_APP_ROLE)


@pytest.fixture(scope="module")
def runtime_engine(runtime_url):
    eng = create_db_engine(runtime_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clean(engine):
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE training.model_versions, training.audit_log, training.training_jobs, "
                          "training.adaptation_inputs, training.rollouts"))
    return engine


@pytest.fixture(scope="module")
def tokens():
    return TokenFactory()


@pytest.fixture
async def env(clean, runtime_url, runtime_engine, redis_url, tokens, tmp_path):
    """(stub, the owner's engine, audit sink, settings) of a training server (as the runtime role)
    on a clean registry."""
    settings = Settings(port=0, database_url=runtime_url, redis_url=redis_url, model_base=str(tmp_path / "models"),
                        ece_limit=0.01)
    sink = RecordingSink()
    server = await create_server(settings, engine=runtime_engine, verifier=tokens.verifier(redis_url=redis_url),
                                 audit_sink=sink, start_reaper=False)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield training_pb2_grpc.TrainingServiceStub(channel), clean, sink, settings
    await channel.close()
    await server.stop(0)
