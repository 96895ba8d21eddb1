"""Batches (idempotent items), statistics checked against hand-computed numbers, audit
scoping, the reviewed-data-set export and the retention purge."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from sqlalchemy import create_engine, text

from history_factories import User, make_prediction, png_bytes

from hemovision_history.blobstore import LocalBlobStore, blob_key
from hemovision_history.server import build_service

T = 10


async def record(stub, user, prediction, **kw):
    return await stub.RecordPrediction(
        history_pb2.RecordPredictionRequest(prediction=prediction, **kw), metadata=user.metadata, timeout=T
    )


def item(batch_id, index, *, prediction_id="", error="", filename=""):
    status = history_pb2.BATCH_ITEM_STATUS_SUCCEEDED if prediction_id else history_pb2.BATCH_ITEM_STATUS_FAILED
    return history_pb2.RecordBatchItemRequest(item=history_pb2.BatchItem(
        batch_id=batch_id, index=index, status=status, prediction_id=prediction_id, error=error, filename=filename))


async def test_batch_lifecycle_and_idempotent_items(stub, alice):
    batch = await stub.CreateBatch(
        history_pb2.CreateBatchRequest(idempotency_key="zip-1", total=3, sample_id="S-9"), metadata=alice.metadata, timeout=T
    )
    assert batch.status == history_pb2.BATCH_STATUS_QUEUED and batch.total == 3
    again = await stub.CreateBatch(history_pb2.CreateBatchRequest(idempotency_key="zip-1", total=3), metadata=alice.metadata, timeout=T)
    assert again.id == batch.id

    p0 = await record(stub, alice, make_prediction("neutrophil", 0.9, batch_id=batch.id), idempotency_key=f"{batch.id}:0")
    first = await stub.RecordBatchItem(item(batch.id, 0, prediction_id=p0.id, filename="a.png"), metadata=alice.metadata, timeout=T)
    # A redelivered item (worker killed after recording) changes nothing.
    p0_again = await record(stub, alice, make_prediction("neutrophil", 0.9, batch_id=batch.id), idempotency_key=f"{batch.id}:0")
    assert p0_again.id == p0.id
    second = await stub.RecordBatchItem(item(batch.id, 0, prediction_id=p0.id, filename="a.png"), metadata=alice.metadata, timeout=T)
    assert second == first
    running = await stub.GetBatch(history_pb2.GetBatchRequest(id=batch.id), metadata=alice.metadata, timeout=T)
    assert running.status == history_pb2.BATCH_STATUS_RUNNING and running.succeeded == 1

    # A prediction recorded without batch_id is attached when its item is recorded.
    p1 = await record(stub, alice, make_prediction("lymphocyte", 0.5, needs_review=True))
    await stub.RecordBatchItem(item(batch.id, 1, prediction_id=p1.id), metadata=alice.metadata, timeout=T)
    await stub.RecordBatchItem(item(batch.id, 2, error="not an image", filename="dir/" + "b" * 400), metadata=alice.metadata, timeout=T)

    done = await stub.GetBatch(history_pb2.GetBatchRequest(id=batch.id), metadata=alice.metadata, timeout=T)
    assert done.status == history_pb2.BATCH_STATUS_COMPLETED and done.completed_at.seconds > 0
    assert (done.succeeded, done.failed, done.needs_review) == (2, 1, 1)
    assert dict(done.label_counts) == {"neutrophil": 1, "lymphocyte": 1}

    items = await stub.ListBatchItems(
        history_pb2.ListBatchItemsRequest(batch_id=batch.id, page=common_pb2.PageRequest(limit=2)), metadata=alice.metadata, timeout=T
    )
    assert [i.index for i in items.items] == [0, 1] and items.next_cursor
    assert items.items[0].prediction.id == p0.id and items.items[1].prediction.batch_id == batch.id
    rest = await stub.ListBatchItems(
        history_pb2.ListBatchItemsRequest(batch_id=batch.id, page=common_pb2.PageRequest(limit=2, cursor=items.next_cursor)),
        metadata=alice.metadata, timeout=T,
    )
    assert [i.index for i in rest.items] == [2] and rest.items[0].error == "not an image" and not rest.next_cursor
    assert rest.items[0].filename == ("dir/" + "b" * 400)[:255]  # clipped, not refused
    assert not rest.items[0].HasField("prediction")

    listed = await stub.ListBatches(history_pb2.ListBatchesRequest(), metadata=alice.metadata, timeout=T)
    assert [b.id for b in listed.items] == [batch.id]


async def test_batch_item_bad_input(stub, alice):
    batch = await stub.CreateBatch(history_pb2.CreateBatchRequest(total=1), metadata=alice.metadata, timeout=T)
    for request in (
        item(batch.id, 5, error="x"),  # index beyond total
        item(batch.id, -1, error="x"),
        item(batch.id, 0),  # failed without error
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RecordBatchItem(request, metadata=alice.metadata, timeout=T)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateBatch(history_pb2.CreateBatchRequest(total=0), metadata=alice.metadata, timeout=T)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Every item failed: the batch could not be processed at all.
    await stub.RecordBatchItem(item(batch.id, 0, error="not an image"), metadata=alice.metadata, timeout=T)
    failed = await stub.GetBatch(history_pb2.GetBatchRequest(id=batch.id), metadata=alice.metadata, timeout=T)
    assert failed.status == history_pb2.BATCH_STATUS_FAILED and failed.failed == 1 and failed.completed_at.seconds > 0


async def test_statistics_match_hand_computed_values(stub, alice, migrated_url):
    rows = [
        # label, confidence, needs_review, model version, days ago
        ("neutrophil", 0.9, False, 1, 0),
        ("neutrophil", 0.7, True, 1, 0),
        ("lymphocyte", 0.6, True, 2, 1),
        ("lymphocyte", 0.8, False, 2, 1),
        ("platelet", 1.0, False, 2, 2),
    ]
    ids = []
    for label, conf, flagged, version, _ in rows:
        ids.append((await record(stub, alice, make_prediction(label, conf, needs_review=flagged, model_version=version))).id)
    # Reviewer agrees on #0 and #3, corrects #1 (neutrophil -> monocyte).
    reviews = {ids[0]: "neutrophil", ids[1]: "monocyte", ids[3]: "lymphocyte"}
    for pid, label in reviews.items():
        await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=pid, label=label), metadata=alice.metadata, timeout=T)
    engine = create_engine(migrated_url)
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        for pid, row in zip(ids, rows, strict=True):
            conn.execute(text("UPDATE history.predictions SET created_at = :t WHERE id = :i"),
                         {"t": noon - timedelta(days=row[4]), "i": pid})
    engine.dispose()
    # Noise in another organization must not count.
    await record(stub, User.new(), make_prediction("basophil", 0.5))

    s = await stub.GetStatistics(history_pb2.GetStatisticsRequest(), metadata=alice.metadata, timeout=T)
    assert s.total == 5
    assert dict(s.label_counts) == {"neutrophil": 2, "lymphocyte": 2, "platelet": 1}
    assert s.mean_confidence == pytest.approx((0.9 + 0.7 + 0.6 + 0.8 + 1.0) / 5, abs=1e-6)
    assert s.review_rate == pytest.approx(2 / 5)
    assert s.reviewed == 3
    day = lambda n: (noon - timedelta(days=n)).strftime("%Y-%m-%d")  # noqa: E731
    assert [(d.day, d.count, d.needs_review) for d in s.daily] == [(day(2), 1, 0), (day(1), 2, 1), (day(0), 2, 1)]
    by_model = {(m.model.name, m.model.version): (m.count, m.mean_confidence) for m in s.by_model}
    assert by_model[("hemovision", 1)][0] == 2 and by_model[("hemovision", 1)][1] == pytest.approx(0.8)
    assert by_model[("hemovision", 2)][0] == 3 and by_model[("hemovision", 2)][1] == pytest.approx(0.8)
    agreement = {a.label: (a.reviewed, a.agreed) for a in s.agreement}
    assert agreement == {"neutrophil": (2, 1), "lymphocyte": (1, 1)}

    # Filters apply to statistics too.
    s2 = await stub.GetStatistics(
        history_pb2.GetStatisticsRequest(filter=history_pb2.PredictionFilter(model_version=2)), metadata=alice.metadata, timeout=T
    )
    assert s2.total == 3 and dict(s2.label_counts) == {"lymphocyte": 2, "platelet": 1}


async def test_statistics_of_an_empty_organization(stub):
    s = await stub.GetStatistics(history_pb2.GetStatisticsRequest(), metadata=User.new().metadata, timeout=T)
    assert s.total == 0 and s.mean_confidence == 0 and s.review_rate == 0 and not s.daily


async def test_audit_events_scoping(stub, alice):
    admin = alice.colleague("org_admin")
    other_admin = User.new(role="org_admin")
    platform = User.new(role="platform_admin")
    mine = await stub.RecordAuditEvent(
        history_pb2.RecordAuditEventRequest(action="report.download", target_type="prediction", target_id="p1",
                                            details_json='{"format": "pdf"}'),
        metadata=alice.metadata, timeout=T,
    )
    assert mine.organization_id == alice.organization_id and mine.user_id == alice.user_id
    theirs = await stub.RecordAuditEvent(
        history_pb2.RecordAuditEventRequest(action="report.download"), metadata=other_admin.metadata, timeout=T
    )
    platform_event = await stub.RecordAuditEvent(
        history_pb2.RecordAuditEventRequest(action="model.activate", target_type="model_version", target_id="hemovision/4"),
        metadata=platform.metadata, timeout=T,
    )
    assert platform_event.organization_id == ""

    org_view = await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(), metadata=admin.metadata, timeout=T)
    assert mine.id in {e.id for e in org_view.items} and theirs.id not in {e.id for e in org_view.items}
    everything = await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(), metadata=platform.metadata, timeout=T)
    assert {mine.id, theirs.id, platform_event.id} <= {e.id for e in everything.items}
    models = await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(action_prefix="model."), metadata=platform.metadata, timeout=T)
    assert {e.action for e in models.items} == {"model.activate"}
    # Pagination over audit events.
    page1 = await stub.ListAuditEvents(
        history_pb2.ListAuditEventsRequest(page=common_pb2.PageRequest(limit=1)), metadata=platform.metadata, timeout=T
    )
    page2 = await stub.ListAuditEvents(
        history_pb2.ListAuditEventsRequest(page=common_pb2.PageRequest(limit=1, cursor=page1.next_cursor)),
        metadata=platform.metadata, timeout=T,
    )
    assert page1.items[0].id != page2.items[0].id

    engineer = User.new(role="ml_engineer")
    platform_only = await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(), metadata=engineer.metadata, timeout=T)
    assert {e.organization_id for e in platform_only.items} == {""}
    assert platform_event.id in {e.id for e in platform_only.items}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListAuditEvents(history_pb2.ListAuditEventsRequest(), metadata=alice.metadata, timeout=T)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for bad in ("", "NoDots", "a.b c"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RecordAuditEvent(history_pb2.RecordAuditEventRequest(action=bad), metadata=alice.metadata, timeout=T)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RecordAuditEvent(
            history_pb2.RecordAuditEventRequest(action="a.b", details_json="[1]"), metadata=alice.metadata, timeout=T
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_export_reviewed_dataset_zip(stub, alice, mallory):
    images = {}
    for i, (label, reviewed) in enumerate([("neutrophil", "neutrophil"), ("neutrophil", "monocyte"),
                                           ("platelet", "platelet"), ("basophil", None)]):
        image = png_bytes(rgb=(i * 40, 10, 10))
        p = await record(stub, alice, make_prediction(label, 0.8), image_png=image)
        if reviewed:
            await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=p.id, label=reviewed), metadata=alice.metadata, timeout=T)
            images[p.id] = (reviewed, image)
    # A reviewed cell without a stored image cannot be exported; another org's cell must not be.
    p = await record(stub, alice, make_prediction("eosinophil", 0.8))
    await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=p.id, label="eosinophil"), metadata=alice.metadata, timeout=T)
    q = await record(stub, mallory, make_prediction("eosinophil", 0.8), image_png=png_bytes())
    await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=q.id, label="eosinophil"), metadata=mallory.metadata, timeout=T)

    chunks = [c.data async for c in stub.ExportReviewedDataset(
        history_pb2.ExportReviewedDatasetRequest(val_fraction=0.5), metadata=alice.metadata, timeout=T)]
    assert chunks and all(chunks)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    expected = {f"{label}/{pid}.png": data for pid, (label, data) in images.items()}
    assert set(archive.namelist()) == set(expected) | {"splits.csv"}
    for path, data in expected.items():
        assert archive.read(path) == data
    rows = list(csv.DictReader(io.StringIO(archive.read("splits.csv").decode())))
    assert {r["path"] for r in rows} == set(expected)
    assert all(r["label"] == r["path"].split("/")[0] and r["split"] in {"train", "val"} for r in rows)
    # each cell names the model version whose preprocessing made its stored image (adaptation needs it)
    assert all(r["model"] and int(r["version"]) >= 1 for r in rows)
    # Deterministic split: a second export assigns the same splits.
    chunks2 = [c.data async for c in stub.ExportReviewedDataset(
        history_pb2.ExportReviewedDatasetRequest(val_fraction=0.5), metadata=alice.metadata, timeout=T)]
    rows2 = list(csv.DictReader(io.StringIO(zipfile.ZipFile(io.BytesIO(b"".join(chunks2))).read("splits.csv").decode())))
    assert sorted((r["path"], r["split"]) for r in rows) == sorted((r["path"], r["split"]) for r in rows2)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.ExportReviewedDataset(
            history_pb2.ExportReviewedDatasetRequest(val_fraction=1.5), metadata=alice.metadata, timeout=T
        ):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_export_streams_in_bounded_chunks(stub, alice):
    import os

    for _ in range(3):
        # ~120 KiB of incompressible pixels per image -> several 64 KiB chunks.
        noisy = png_bytes(width=1, height=1)[:8] + os.urandom(120 * 1024)
        p = await record(stub, alice, make_prediction("monocyte", 0.8), image_png=noisy)
        await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=p.id, label="monocyte"), metadata=alice.metadata, timeout=T)
    sizes = [len(c.data) async for c in stub.ExportReviewedDataset(
        history_pb2.ExportReviewedDatasetRequest(), metadata=alice.metadata, timeout=T)]
    assert len(sizes) >= 5 and max(sizes) <= 64 * 1024


async def test_retention_purge_deletes_old_blobs_only(stub, alice, settings, migrated_url, blob_root, retention_engine):
    old = await record(stub, alice, make_prediction(), image_png=png_bytes(), heatmap_png=png_bytes())
    new = await record(stub, alice, make_prediction(), image_png=png_bytes())
    engine = create_engine(migrated_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE history.predictions SET created_at = now() - interval '40 days' WHERE id = :i"), {"i": old.id})
    engine.dispose()

    keep_forever = build_service(settings.model_copy(update={"retention_days": 0}), blobs=LocalBlobStore(blob_root),
                                 audit_retention_engine=retention_engine)
    assert (await keep_forever.retention.purge()).as_dict()["purged_blobs"] == 0
    keep_forever.engine.dispose()

    service = build_service(settings.model_copy(update={"retention_days": 30}), blobs=LocalBlobStore(blob_root),
                            audit_retention_engine=retention_engine)
    try:
        assert (await service.retention.purge()).as_dict()["purged_blobs"] >= 1
        assert (await service.retention.purge()).as_dict()["purged_blobs"] == 0  # nothing left to purge
    finally:
        service.engine.dispose()
    org = alice.organization_id
    assert not any((blob_root / blob_key(org, old.id, kind)).exists() for kind in ("image", "heatmap"))
    assert (blob_root / blob_key(org, new.id, "image")).exists()
    kept = await stub.GetPrediction(history_pb2.GetPredictionRequest(id=old.id), metadata=alice.metadata, timeout=T)
    assert kept.label == old.label and not kept.has_image and not kept.has_heatmap


def test_purge_command_line(settings, migrated_url, monkeypatch):
    """The purge as `make up` and Kubernetes run it: the runtime role's URL, audit deletions
    through the retention role's."""
    from history_factories import as_role

    from hemovision_history.__main__ import main
    from hemovision_history.tables import AUDIT_RETENTION_ROLE

    monkeypatch.setenv("HV_HISTORY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HV_HISTORY_RETENTION_DATABASE_URL", as_role(migrated_url, AUDIT_RETENTION_ROLE))
    monkeypatch.setenv("HV_HISTORY_BLOB_ROOT", settings.blob_root)
    monkeypatch.setenv("HV_HISTORY_RETENTION_DAYS", "3650")
    assert main(["purge"]) == 0
