"""PostgreSQL unreachable (restarting, bench/reliability): records answer UNAVAILABLE -- retryable, the
gateway sends them again with the same idempotency keys -- never INTERNAL."""

from __future__ import annotations

import socket

import grpc
import pytest
from hemovision.history.v1 import history_pb2

from hemovision_history.settings import Settings
from history_factories import running_history, make_prediction, png_bytes


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def stub_without_database(tmp_path, redis_url):
    settings = Settings(port=0, database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{_closed_port()}/gone",
                        blob_root=str(tmp_path / "blobs"), db_pool_size=2)
    async with running_history(settings, redis_url) as stub:
        yield stub


async def test_record_without_database_is_unavailable(stub_without_database, alice):
    request = history_pb2.RecordPredictionRequest(prediction=make_prediction(), idempotency_key="k1",
                                                  image_png=png_bytes())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub_without_database.RecordPrediction(request, metadata=alice.metadata, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    assert "database" in info.value.details()


async def test_grouped_records_without_database_are_unavailable_each(stub_without_database, alice):
    items = [history_pb2.RecordPredictionRequest(prediction=make_prediction(), idempotency_key=f"k{i}")
             for i in range(3)]
    answer = await stub_without_database.RecordPredictions(history_pb2.RecordPredictionsRequest(items=items),
                                                           metadata=alice.metadata, timeout=10)
    codes = [r.error.code for r in answer.results]
    assert codes == [grpc.StatusCode.UNAVAILABLE.value[0]] * 3


async def test_reads_without_database_are_unavailable_not_internal(stub_without_database, alice):
    """Not only the record path: every RPC that needs PostgreSQL answers a retryable UNAVAILABLE
    while it is gone (a restart under load showed 502s for reads before)."""
    calls = [
        ("ListPredictions", history_pb2.ListPredictionsRequest()),
        ("GetPrediction", history_pb2.GetPredictionRequest(id="6f1d4c1e-0000-4000-8000-000000000000")),
        ("GetStatistics", history_pb2.GetStatisticsRequest()),
        ("ListBatches", history_pb2.ListBatchesRequest()),
    ]
    for method, request in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(stub_without_database, method)(request, metadata=alice.metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, (method, info.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub_without_database.ExportReviewedDataset(history_pb2.ExportReviewedDatasetRequest(),
                                                                   metadata=alice.metadata, timeout=10):
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
