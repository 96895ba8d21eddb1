"""Fixtures: a real in-process history server (own create_server, migrated throwaway
PostgreSQL, blobs in tmp) and the reports server talking to it over gRPC; real tokens."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hemovision.history.v1 import history_pb2_grpc
from hemovision.reports.v1 import reports_pb2_grpc
from hemovision_grpc_server import create_channel

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib

from reports_factories import TOKENS  # noqa: E402

from hemovision_history.__main__ import migrate  # noqa: E402
from hemovision_history.server import create_server as create_history_server  # noqa: E402
from hemovision_history.settings import Settings as HistorySettings  # noqa: E402
from hemovision_reports.server import create_server as create_reports_server  # noqa: E402
from hemovision_reports.settings import Settings as ReportsSettings  # noqa: E402


@pytest.fixture(scope="module")
def migrated_url(postgres_url: str) -> str:
    migrate(HistorySettings(database_url=postgres_url))
    return postgres_url


@pytest.fixture
async def history(migrated_url: str, tmp_path, redis_url: str):
    settings = HistorySettings(port=0, database_url=migrated_url, blob_root=str(tmp_path / "blobs"), db_pool_size=2)
    server = await create_history_server(settings, verifier=TOKENS.verifier(redis_url=redis_url))
    yield server
    await server.stop(0)


@pytest.fixture
async def reports(history, redis_url: str):
    settings = ReportsSettings(port=0, history_addr=f"127.0.0.1:{history.port}", auth_addr="", call_timeout_s=10)
    server = await create_reports_server(settings, verifier=TOKENS.verifier(redis_url=redis_url))
    yield server
    await server.stop(0)


@pytest.fixture
async def history_stub(history):
    channel = create_channel(f"127.0.0.1:{history.port}")
    yield history_pb2_grpc.HistoryServiceStub(channel)
    await channel.close()


@pytest.fixture
async def reports_stub(reports):
    channel = create_channel(f"127.0.0.1:{reports.port}")
    yield reports_pb2_grpc.ReportsServiceStub(channel)
    await channel.close()
