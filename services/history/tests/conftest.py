"""Fixtures: a migrated throwaway PostgreSQL database, a local blob store in tmp, a real
in-process HistoryService on port 0 and real EdDSA tokens from TokenFactory.

The server runs as it runs in every deployment: signed in as the restricted runtime role
hemovision_history_app (`settings.database_url`); `migrated_url` is the schema owner's URL (the
migrations, and tests that reach around the service)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hemovision.history.v1 import history_pb2_grpc
from hemovision_grpc_server import create_channel

# --import-mode=importlib: make this folder's test-data module importable.
sys.path.insert(0, str(Path(__file__).parent))

from history_factories import TOKENS, User, as_role  # noqa: E402

from hemovision_history.__main__ import migrate  # noqa: E402
from hemovision_history.blobstore import LocalBlobStore  # noqa: E402
from hemovision_history.server import create_server  # noqa: E402
from hemovision_history.settings import Settings  # noqa: E402
from hemovision_history.tables import AUDIT_RETENTION_ROLE, HISTORY_APP_ROLE  # noqa: E402


@pytest.fixture(scope="module")
def migrated_url(postgres_url: str) -> str:
    migrate(Settings(database_url=postgres_url))
    return postgres_url


@pytest.fixture
def blob_root(tmp_path):
    return tmp_path / "blobs"


@pytest.fixture
def runtime_url(migrated_url: str) -> str:
    """The migrated database as the runtime role the server signs in as."""
    return as_role(migrated_url, HISTORY_APP_ROLE)


@pytest.fixture
def retention_engine(migrated_url: str):
    """The purge's audit connection as deployments give it (HV_HISTORY_RETENTION_DATABASE_URL):
    signed in as hemovision_audit_retention."""
    from hemovision_database import create_db_engine

    engine = create_db_engine(as_role(migrated_url, AUDIT_RETENTION_ROLE), pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(runtime_url: str, migrated_url: str, blob_root) -> Settings:
    return Settings(port=0, database_url=runtime_url, migrate_database_url=migrated_url,
                    blob_root=str(blob_root), db_pool_size=2)


@pytest.fixture
async def history(settings: Settings, redis_url: str):
    server = await create_server(settings, verifier=TOKENS.verifier(redis_url=redis_url), blobs=LocalBlobStore(settings.blob_root))
    yield server
    await server.stop(0)


@pytest.fixture
async def stub(history):
    channel = create_channel(f"127.0.0.1:{history.port}")
    yield history_pb2_grpc.HistoryServiceStub(channel)
    await channel.close()


@pytest.fixture
def alice() -> User:
    return User.new()


@pytest.fixture
def mallory() -> User:
    """A user of another organization."""
    return User.new()
