"""Fixtures: a migrated throwaway PostgreSQL database, a local blob store in tmp, a real
in-process HistoryService on port 0 and real EdDSA tokens from TokenFactory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hemovision.history.v1 import history_pb2_grpc
from hemovision_grpc_server import create_channel

# --import-mode=importlib: make this folder's test-data module importable.
sys.path.insert(0, str(Path(__file__).parent))

from history_factories import TOKENS, User  # noqa: E402

from hemovision_history.__main__ import migrate  # noqa: E402
from hemovision_history.blobstore import LocalBlobStore  # noqa: E402
from hemovision_history.server import create_server  # noqa: E402
from hemovision_history.settings import Settings  # noqa: E402


@pytest.fixture(scope="module")
def migrated_url(postgres_url: str) -> str:
    migrate(Settings(database_url=postgres_url))
    return postgres_url


@pytest.fixture
def blob_root(tmp_path):
    return tmp_path / "blobs"


@pytest.fixture
def settings(migrated_url: str, blob_root) -> Settings:
    return Settings(port=0, database_url=migrated_url, blob_root=str(blob_root), db_pool_size=2)


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
