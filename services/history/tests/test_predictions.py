"""Record / Get / List / Delete / Review / blobs through a real in-process server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2
from sqlalchemy import create_engine, text

from hemovision_history.blobstore import blob_key
from hemovision_history.servicer import new_prediction_from_pb
from history_factories import User, make_prediction, png_bytes

T = 10  # seconds: deadline on every test call


async def record(stub, user: User, prediction=None, **kwargs) -> history_pb2.Prediction:
    request = history_pb2.RecordPredictionRequest(prediction=prediction or make_prediction(), **kwargs)
    return await stub.RecordPrediction(request, metadata=user.metadata, timeout=T)


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


async def test_record_then_get_round_trips_every_field(stub, alice):
    image, heatmap = png_bytes(), png_bytes(rgb=(10, 20, 30))
    stored = await record(stub, alice, make_prediction("eosinophil", 0.75, sample_id="S-1"), image_png=image, heatmap_png=heatmap)
    assert uuid.UUID(stored.id)
    assert stored.organization_id == alice.organization_id and stored.user_id == alice.user_id
    got = await stub.GetPrediction(history_pb2.GetPredictionRequest(id=stored.id), metadata=alice.metadata, timeout=T)
    assert got == stored
    assert got.label == "eosinophil"
    assert got.confidence == pytest.approx(0.75)
    assert set(got.probabilities) == {
        "basophil", "eosinophil", "erythroblast", "immature_granulocyte",
        "lymphocyte", "monocyte", "neutrophil", "platelet",
    }
    assert got.model.name == "hemovision" and got.model.version == 1
    assert got.timings_ms["inference"] == pytest.approx(7.25)
    assert got.temperature == pytest.approx(1.3) and got.ood_score == pytest.approx(0.2)
    assert got.sample_id == "S-1" and got.has_image and got.has_heatmap
    assert got.created_at.seconds > 0 and not got.HasField("reviewed_at")
    blob = await stub.GetPredictionBlob(
        history_pb2.GetPredictionBlobRequest(prediction_id=stored.id, kind=history_pb2.BLOB_KIND_HEATMAP),
        metadata=alice.metadata, timeout=T,
    )
    assert blob.content_type == "image/png" and blob.data == heatmap


async def test_idempotency_key_returns_first_record(stub, alice, mallory, blob_root):
    first = await record(stub, alice, idempotency_key="upload-1", image_png=png_bytes())
    again = await record(stub, alice, make_prediction("platelet", 0.6), idempotency_key="upload-1", image_png=png_bytes())
    assert again.id == first.id and again.label == first.label
    # The same key in another organization is another record.
    other = await record(stub, mallory, idempotency_key="upload-1")
    assert other.id != first.id
    page = await stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=alice.metadata, timeout=T)
    assert [p.id for p in page.items] == [first.id]
    # The retry stored no second image.
    assert len(list((blob_root / alice.organization_id / "predictions").iterdir())) == 1


async def test_concurrent_retries_store_one_record(stub, alice, blob_root):
    import asyncio

    results = await asyncio.gather(*[
        record(stub, alice, make_prediction("monocyte", 0.8), idempotency_key="same-upload", image_png=png_bytes())
        for _ in range(6)
    ])
    assert len({r.id for r in results}) == 1
    page = await stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=alice.metadata, timeout=T)
    assert len(page.items) == 1
    # The losers' blobs were removed: one prediction folder, one image.
    assert len(list((blob_root / alice.organization_id / "predictions").rglob("*.png"))) == 1


async def test_storage_policy_off_stores_no_blobs(settings, redis_url, alice, blob_root):
    from history_factories import TOKENS
    from hemovision_grpc_server import create_channel
    from hemovision.history.v1 import history_pb2_grpc
    from hemovision_history.server import create_server

    server = await create_server(settings.model_copy(update={"store_images": False}), verifier=TOKENS.verifier(redis_url=redis_url))
    try:
        async with create_channel(f"127.0.0.1:{server.port}") as ch:
            stub = history_pb2_grpc.HistoryServiceStub(ch)
            stored = await record(stub, alice, image_png=png_bytes(), heatmap_png=png_bytes())
            assert not stored.has_image and not stored.has_heatmap
            assert await code_of(stub.GetPredictionBlob(
                history_pb2.GetPredictionBlobRequest(prediction_id=stored.id, kind=history_pb2.BLOB_KIND_IMAGE),
                metadata=alice.metadata, timeout=T)) == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)
    assert not blob_root.exists() or not any(blob_root.rglob("*.png"))


async def test_pagination_walks_every_record_once_newest_first(stub, alice):
    ids = [(await record(stub, alice)).id for _ in range(7)]
    seen, cursor, pages = [], "", 0
    while True:
        page = await stub.ListPredictions(
            history_pb2.ListPredictionsRequest(page=common_pb2.PageRequest(limit=3, cursor=cursor)),
            metadata=alice.metadata, timeout=T,
        )
        seen += [p.id for p in page.items]
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert pages == 3
    assert seen == list(reversed(ids))


async def test_every_filter(stub, alice, migrated_url):
    a = await record(stub, alice, make_prediction("lymphocyte", 0.9, sample_id="S-A", model_version=1))
    b = await record(stub, alice, make_prediction("lymphocyte", 0.4, needs_review=True, model_version=2))
    c = await record(stub, alice, make_prediction("monocyte", 0.8, sample_id="S-A", model_version=2))
    batch = await stub.CreateBatch(history_pb2.CreateBatchRequest(total=1), metadata=alice.metadata, timeout=T)
    d = await record(stub, alice, make_prediction("basophil", 0.7, batch_id=batch.id))
    await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=c.id, label="monocyte"), metadata=alice.metadata, timeout=T)
    engine = create_engine(migrated_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE history.predictions SET created_at = now() - interval '3 days' WHERE id = :i"), {"i": a.id})
    engine.dispose()

    async def ids(**flt) -> set[str]:
        page = await stub.ListPredictions(
            history_pb2.ListPredictionsRequest(filter=history_pb2.PredictionFilter(**flt)), metadata=alice.metadata, timeout=T
        )
        return {p.id for p in page.items}

    assert await ids(label="lymphocyte") == {a.id, b.id}
    assert await ids(needs_review=True) == {b.id}
    assert await ids(needs_review=False) == {a.id, c.id, d.id}
    assert await ids(model_version=2) == {b.id, c.id}
    assert await ids(sample_id="S-A") == {a.id, c.id}
    assert await ids(reviewed=True) == {c.id}
    assert await ids(reviewed=False) == {a.id, b.id, d.id}
    assert await ids(batch_id=batch.id) == {d.id}
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    assert await ids(created=common_pb2.TimeRange(start=start)) == {b.id, c.id, d.id}
    assert await ids(created=common_pb2.TimeRange(end=start)) == {a.id}
    assert await ids(label="lymphocyte", needs_review=False) == {a.id}


async def test_review_queue_order_flagged_first_then_lowest_confidence(stub, alice):
    low = await record(stub, alice, make_prediction("platelet", 0.3, needs_review=True))
    mid = await record(stub, alice, make_prediction("platelet", 0.5, needs_review=True))
    ok = await record(stub, alice, make_prediction("platelet", 0.2))
    seen, cursor = [], ""
    while True:
        page = await stub.ListPredictions(
            history_pb2.ListPredictionsRequest(review_queue_order=True, page=common_pb2.PageRequest(limit=1, cursor=cursor)),
            metadata=alice.metadata, timeout=T,
        )
        seen += [p.id for p in page.items]
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == [low.id, mid.id, ok.id]


async def test_cross_organization_ids_are_not_found_everywhere(stub, alice, mallory):
    stored = await record(stub, alice, image_png=png_bytes())
    batch = await stub.CreateBatch(history_pb2.CreateBatchRequest(total=2), metadata=alice.metadata, timeout=T)
    md = mallory.metadata
    calls = [
        stub.GetPrediction(history_pb2.GetPredictionRequest(id=stored.id), metadata=md, timeout=T),
        stub.DeletePrediction(history_pb2.DeletePredictionRequest(id=stored.id), metadata=md, timeout=T),
        stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=stored.id, label="platelet"), metadata=md, timeout=T),
        stub.GetPredictionBlob(
            history_pb2.GetPredictionBlobRequest(prediction_id=stored.id, kind=history_pb2.BLOB_KIND_IMAGE), metadata=md, timeout=T
        ),
        stub.GetBatch(history_pb2.GetBatchRequest(id=batch.id), metadata=md, timeout=T),
        stub.ListBatchItems(history_pb2.ListBatchItemsRequest(batch_id=batch.id), metadata=md, timeout=T),
        stub.RecordBatchItem(
            history_pb2.RecordBatchItemRequest(item=history_pb2.BatchItem(
                batch_id=batch.id, index=0, status=history_pb2.BATCH_ITEM_STATUS_FAILED, error="x")),
            metadata=md, timeout=T,
        ),
        stub.RecordPrediction(
            history_pb2.RecordPredictionRequest(prediction=make_prediction(batch_id=batch.id)), metadata=md, timeout=T
        ),
    ]
    for call in calls:
        assert await code_of(call) == grpc.StatusCode.NOT_FOUND
    # Mallory's own item pointing at Alice's prediction: NOT_FOUND too.
    own = await stub.CreateBatch(history_pb2.CreateBatchRequest(total=1), metadata=md, timeout=T)
    assert await code_of(stub.RecordBatchItem(
        history_pb2.RecordBatchItemRequest(item=history_pb2.BatchItem(
            batch_id=own.id, index=0, status=history_pb2.BATCH_ITEM_STATUS_SUCCEEDED, prediction_id=stored.id)),
        metadata=md, timeout=T)) == grpc.StatusCode.NOT_FOUND
    # Lists and statistics never show the other organization's rows.
    page = await stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=md, timeout=T)
    assert stored.id not in {p.id for p in page.items}
    batches = await stub.ListBatches(history_pb2.ListBatchesRequest(), metadata=md, timeout=T)
    assert batch.id not in {b.id for b in batches.items}
    stats = await stub.GetStatistics(history_pb2.GetStatisticsRequest(), metadata=md, timeout=T)
    assert stats.total == 0
    # ... and Alice's record is untouched.
    got = await stub.GetPrediction(history_pb2.GetPredictionRequest(id=stored.id), metadata=alice.metadata, timeout=T)
    assert got.reviewed_label == "" and got.has_image


async def test_unknown_and_malformed_ids_are_not_found(stub, alice):
    for pid in (str(uuid.uuid4()), "not-a-uuid", ""):
        assert await code_of(
            stub.GetPrediction(history_pb2.GetPredictionRequest(id=pid), metadata=alice.metadata, timeout=T)
        ) == grpc.StatusCode.NOT_FOUND


async def test_missing_or_bad_token_is_unauthenticated(stub):
    assert await code_of(stub.ListPredictions(history_pb2.ListPredictionsRequest(), timeout=T)) == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(
        stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=(("authorization", "Bearer nope"),), timeout=T)
    ) == grpc.StatusCode.UNAUTHENTICATED


async def test_delete_removes_row_and_blobs(stub, alice, blob_root):
    stored = await record(stub, alice, image_png=png_bytes(), heatmap_png=png_bytes())
    files = [blob_root / blob_key(alice.organization_id, stored.id, kind) for kind in ("image", "heatmap")]
    assert all(f.is_file() for f in files)
    await stub.DeletePrediction(history_pb2.DeletePredictionRequest(id=stored.id), metadata=alice.metadata, timeout=T)
    assert not any(f.exists() for f in files)
    assert not files[0].parent.exists()  # its shard held nothing else, so it went too
    assert await code_of(
        stub.GetPrediction(history_pb2.GetPredictionRequest(id=stored.id), metadata=alice.metadata, timeout=T)
    ) == grpc.StatusCode.NOT_FOUND


async def test_delete_needs_uploader_or_org_admin(stub, alice):
    stored = await record(stub, alice)
    colleague = alice.colleague()
    assert await code_of(
        stub.DeletePrediction(history_pb2.DeletePredictionRequest(id=stored.id), metadata=colleague.metadata, timeout=T)
    ) == grpc.StatusCode.PERMISSION_DENIED
    admin = alice.colleague("org_admin")
    await stub.DeletePrediction(history_pb2.DeletePredictionRequest(id=stored.id), metadata=admin.metadata, timeout=T)


async def test_review_records_who_and_when_and_is_audited(stub, alice):
    stored = await record(stub, alice, make_prediction("monocyte", 0.55, needs_review=True))
    reviewer = alice.colleague()
    reviewed = await stub.ReviewPrediction(
        history_pb2.ReviewPredictionRequest(id=stored.id, label="lymphocyte", comment="nucleus shape"),
        metadata=reviewer.metadata, timeout=T,
    )
    assert reviewed.label == "monocyte" and reviewed.reviewed_label == "lymphocyte"
    assert reviewed.reviewed_by == reviewer.user_id and reviewed.review_comment == "nucleus shape"
    assert abs(reviewed.reviewed_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    assert await code_of(stub.ReviewPrediction(
        history_pb2.ReviewPredictionRequest(id=stored.id, label="banana"), metadata=reviewer.metadata, timeout=T
    )) == grpc.StatusCode.INVALID_ARGUMENT
    admin = alice.colleague("org_admin")
    events = await stub.ListAuditEvents(
        history_pb2.ListAuditEventsRequest(action_prefix="prediction."), metadata=admin.metadata, timeout=T
    )
    review = [e for e in events.items if e.action == "prediction.review" and e.target_id == stored.id]
    assert len(review) == 1 and review[0].user_id == reviewer.user_id
    assert '"agreed": false' in review[0].details_json


async def test_review_labels_are_the_classes_of_the_model_that_classified_the_cell(history, stub, alice):
    """The reviewer may choose among the classified cell's own classes (its model's metadata, kept
    as the probabilities' keys), not a list history writes down."""
    blast_model = make_prediction("lymphocyte", 0.6)
    blast_model.probabilities.clear()
    blast_model.probabilities.update({"blast": 0.4, "lymphocyte": 0.6})
    new = new_prediction_from_pb(blast_model)
    new.batch_id = None
    # stored as it is: RecordPrediction takes the platform's label set only
    [(stored, _)] = history.service.predictions.repo.insert_predictions([dict(
        prediction_id=str(uuid.uuid4()), organization_id=alice.organization_id, user_id=alice.user_id,
        idempotency_key=None, image_key=None, heatmap_key=None, new=new)])
    reviewed = await stub.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=stored.id, label="blast"),
                                           metadata=alice.metadata, timeout=T)
    assert reviewed.reviewed_label == "blast"
    assert await code_of(stub.ReviewPrediction(
        history_pb2.ReviewPredictionRequest(id=stored.id, label="monocyte"), metadata=alice.metadata, timeout=T
    )) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: setattr(p, "label", "banana"), "label must be one of"),
        (lambda p: p.probabilities.pop("platelet"), "probabilities is missing platelet"),
        (lambda p: p.probabilities.__setitem__("banana", 0.0), "unknown classes"),
        (lambda p: p.probabilities.__setitem__("basophil", 0.5), "sum to 1"),
        (lambda p: setattr(p, "confidence", 0.1), "confidence must equal"),
        (lambda p: setattr(p, "confidence", float("nan")), "confidence"),
        (lambda p: p.model.__setattr__("name", ""), "model.name is required"),
        (lambda p: setattr(p, "image_sha256", "xyz"), "image_sha256"),
        (lambda p: setattr(p, "note", "x" * 2001), "note is longer"),
        (lambda p: p.timings_ms.__setitem__("inference", -1.0), "timings_ms[inference]"),
    ],
)
async def test_bad_records_are_invalid_argument_and_store_nothing(stub, mallory, mutate, message):
    prediction = make_prediction()
    mutate(prediction)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await record(stub, mallory, prediction)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
    page = await stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=mallory.metadata, timeout=T)
    assert len(page.items) == 0


async def test_bad_image_cursor_and_limit(stub, alice):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await record(stub, alice, image_png=b"GIF89a....")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "PNG" in info.value.details()
    for page in (common_pb2.PageRequest(cursor="garbage!"), common_pb2.PageRequest(limit=-1)):
        assert await code_of(stub.ListPredictions(
            history_pb2.ListPredictionsRequest(page=page), metadata=alice.metadata, timeout=T
        )) == grpc.StatusCode.INVALID_ARGUMENT


async def test_platform_user_without_organization_cannot_record(stub):
    admin = User.new(role="platform_admin")
    assert await code_of(record(stub, admin)) == grpc.StatusCode.PERMISSION_DENIED


async def record_many(stub, user: User, items) -> list[history_pb2.RecordPredictionResult]:
    request = history_pb2.RecordPredictionsRequest(items=items)
    return list((await stub.RecordPredictions(request, metadata=user.metadata, timeout=T)).results)


async def test_record_many_stores_each_and_answers_in_order(stub, alice, mallory, blob_root):
    labels = ["neutrophil", "platelet", "monocyte", "lymphocyte"]
    results = await record_many(stub, alice, [
        history_pb2.RecordPredictionRequest(prediction=make_prediction(label, 0.7 + i / 10), idempotency_key=f"k{i}",
                                            image_png=png_bytes(), heatmap_png=png_bytes())
        for i, label in enumerate(labels)
    ])
    assert [r.WhichOneof("outcome") for r in results] == ["prediction"] * 4
    assert [r.prediction.label for r in results] == labels
    assert all(r.prediction.organization_id == alice.organization_id and r.prediction.has_image for r in results)
    got = await stub.GetPrediction(history_pb2.GetPredictionRequest(id=results[2].prediction.id),
                                   metadata=alice.metadata, timeout=T)
    assert got.label == "monocyte" and got.confidence == pytest.approx(0.9)
    assert await code_of(stub.GetPrediction(history_pb2.GetPredictionRequest(id=results[0].prediction.id),
                                            metadata=mallory.metadata, timeout=T)) == grpc.StatusCode.NOT_FOUND
    assert len(list((blob_root / alice.organization_id / "predictions").rglob("*.png"))) == 8


async def test_record_many_items_fail_alone_and_replays_give_the_first_record(stub, alice, blob_root):
    first = await record(stub, alice, make_prediction("basophil", 0.8), idempotency_key="seen", image_png=png_bytes())
    results = await record_many(stub, alice, [
        history_pb2.RecordPredictionRequest(prediction=make_prediction("eosinophil", 0.9), idempotency_key="new-1",
                                            image_png=png_bytes()),
        history_pb2.RecordPredictionRequest(prediction=make_prediction("no-such-class", 0.9), idempotency_key="bad"),
        history_pb2.RecordPredictionRequest(prediction=make_prediction("platelet", 0.9), idempotency_key="seen",
                                            image_png=png_bytes()),
        history_pb2.RecordPredictionRequest(prediction=make_prediction("monocyte", 0.9), image_png=b"not a png"),
        history_pb2.RecordPredictionRequest(prediction=make_prediction("platelet", 0.9, batch_id=str(uuid.uuid4()))),
        history_pb2.RecordPredictionRequest(prediction=make_prediction("lymphocyte", 0.9), idempotency_key="twice"),
        history_pb2.RecordPredictionRequest(prediction=make_prediction("lymphocyte", 0.9), idempotency_key="twice"),
    ])
    kinds = [r.WhichOneof("outcome") for r in results]
    assert kinds == ["prediction", "error", "prediction", "error", "error", "prediction", "prediction"]
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "label" in results[1].error.message
    assert results[3].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert results[4].error.code == grpc.StatusCode.NOT_FOUND.value[0] and "batch" in results[4].error.message
    assert results[2].prediction.id == first.id and results[2].prediction.label == "basophil"
    assert results[5].prediction.id == results[6].prediction.id
    page = await stub.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=alice.metadata, timeout=T)
    assert sorted(p.label for p in page.items) == ["basophil", "eosinophil", "lymphocyte"]
    # the replay's image was removed again: basophil's and eosinophil's images only
    assert len(list((blob_root / alice.organization_id / "predictions").rglob("*.png"))) == 2


async def test_record_many_bounds(stub, alice):
    assert await code_of(stub.RecordPredictions(history_pb2.RecordPredictionsRequest(), metadata=alice.metadata,
                                                timeout=T)) == grpc.StatusCode.INVALID_ARGUMENT
    too_many = [history_pb2.RecordPredictionRequest(prediction=make_prediction()) for _ in range(65)]
    assert await code_of(stub.RecordPredictions(history_pb2.RecordPredictionsRequest(items=too_many),
                                                metadata=alice.metadata, timeout=T)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(stub.RecordPredictions(history_pb2.RecordPredictionsRequest(items=too_many[:2]),
                                                timeout=T)) == grpc.StatusCode.UNAUTHENTICATED


async def test_record_many_falls_back_to_one_by_one_when_the_shared_insert_fails(history, stub, alice, blob_root,
                                                                                 monkeypatch):
    repo = history.service.predictions.repo
    real = repo.insert_predictions

    def fail_when_shared(rows):
        if len(rows) > 1:
            raise RuntimeError("shared insert failed")
        return real(rows)

    monkeypatch.setattr(repo, "insert_predictions", fail_when_shared)
    results = await record_many(stub, alice, [
        history_pb2.RecordPredictionRequest(prediction=make_prediction(label, 0.9), idempotency_key=f"f{i}",
                                            image_png=png_bytes())
        for i, label in enumerate(["neutrophil", "platelet", "monocyte"])
    ])
    assert [r.prediction.label for r in results] == ["neutrophil", "platelet", "monocyte"]
    # the shared attempt's blobs were removed; each item's own write left one image
    assert len(list((blob_root / alice.organization_id / "predictions").rglob("*.png"))) == 3


async def test_record_many_is_one_cached_insert_statement(history, stub, alice):
    """A group goes to PostgreSQL as one INSERT, compiled once and reused: compiling a statement
    per call cost ~15 % of the history service's CPU per upload."""
    from sqlalchemy import event

    engine = history.service.engine
    inserts: list[str] = []
    cached: list[bool] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO HISTORY.PREDICTIONS"):
            inserts.append(statement)
            cached.append("cached" in context._get_cache_stats())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        for group in range(2):
            results = await record_many(stub, alice, [
                history_pb2.RecordPredictionRequest(prediction=make_prediction(label, 0.9),
                                                    idempotency_key=f"c{group}-{i}")
                for i, label in enumerate(["neutrophil", "platelet", "monocyte"])
            ])
            assert [r.WhichOneof("outcome") for r in results] == ["prediction"] * 3
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(inserts) == 2  # one statement per group of three
    assert cached[-1], "the INSERT was compiled again for the second group"
