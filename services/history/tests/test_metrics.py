"""History's metrics: batch items finished by outcome (counted where they are recorded), and
batches by status and items still pending, read from PostgreSQL at scrape time."""

from __future__ import annotations

from hemovision.history.v1 import history_pb2
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text

from history_factories import User, make_prediction

T = 10


def sample(name: str, labels: dict | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_batch_progress_series(stub, migrated_url, alice: User):
    engine = create_engine(migrated_url)  # the owner (the runtime role may not TRUNCATE)
    with engine.begin() as conn:  # other tests' batches must not count here
        conn.execute(text("TRUNCATE history.batches CASCADE"))
    engine.dispose()
    succeeded, failed = sample("hemovision_batch_items_total", {"outcome": "succeeded"}), \
        sample("hemovision_batch_items_total", {"outcome": "failed"})
    batch = await stub.CreateBatch(history_pb2.CreateBatchRequest(idempotency_key="m-1", total=3),
                                   metadata=alice.metadata, timeout=T)
    assert sample("hemovision_batches", {"status": "queued"}) + sample("hemovision_batches", {"status": "running"}) == 1
    assert sample("hemovision_batch_items_pending") == 3
    p0 = await stub.RecordPrediction(history_pb2.RecordPredictionRequest(prediction=make_prediction()),
                                     metadata=alice.metadata, timeout=T)
    for index, kw in enumerate([{"prediction_id": p0.id}, {"error": "not an image"}]):
        status = (history_pb2.BATCH_ITEM_STATUS_SUCCEEDED if "prediction_id" in kw
                  else history_pb2.BATCH_ITEM_STATUS_FAILED)
        await stub.RecordBatchItem(history_pb2.RecordBatchItemRequest(item=history_pb2.BatchItem(
            batch_id=batch.id, index=index, status=status, filename=f"{index}.png", **kw)),
            metadata=alice.metadata, timeout=T)
    assert sample("hemovision_batch_items_total", {"outcome": "succeeded"}) == succeeded + 1
    assert sample("hemovision_batch_items_total", {"outcome": "failed"}) == failed + 1
    assert sample("hemovision_batch_items_pending") == 1
