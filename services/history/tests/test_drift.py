"""GetDrift and hemovision_drift_score: live histograms in PostgreSQL against a reference read
from Redis, scoped by organization (members: their own, with histograms; platform staff: every
organization's scores only), minimum sample size, missing reference, the metric.

The streams here are synthetic (drawn from the reference's own distribution, or with the ood_score
moved up); tests/drift/test_drift_streams.py does the same with the shipped model's real answers on
clean and stain-shifted PBC cells."""

from __future__ import annotations

import json
import random

import grpc
import pytest
import redis
from hemovision.history.v1 import history_pb2
from hemovision_contracts import CLASS_NAMES, drift
from hemovision_telemetry.metrics import REGISTRY
from history_factories import running_history, User, make_prediction


T = 10
# a model whose ood_score on its reference cells is ~N(-12, 2) and whose confidence is mostly > 0.99
REF_RNG = random.Random(7)


def draw(rng: random.Random, n: int, *, ood_shift: float = 0.0, confident: float = 0.9):
    out = []
    for _ in range(n):
        label = rng.choice(CLASS_NAMES)
        conf = rng.uniform(0.991, 0.999) if rng.random() < confident else rng.uniform(0.6, 0.95)
        out.append((label, round(conf, 4), rng.gauss(-12.0 + ood_shift, 2.0)))
    return out


REFERENCE_CELLS = draw(REF_RNG, 2000)
REFERENCE = drift.build_reference(labels=[c[0] for c in REFERENCE_CELLS], class_names=CLASS_NAMES,
                                  confidences=[c[1] for c in REFERENCE_CELLS],
                                  ood_scores=[c[2] for c in REFERENCE_CELLS], source="synthetic")


@pytest.fixture
async def stub(migrated_url, tmp_path, redis_url):
    from hemovision_history.settings import Settings

    settings = Settings(port=0, database_url=migrated_url, blob_root=str(tmp_path / "blobs"), db_pool_size=2,
                        redis_url=redis_url)
    async with running_history(settings, redis_url) as stub:
        yield stub


@pytest.fixture
def published(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set(drift.reference_key("hemovision", 1), json.dumps(REFERENCE))
    yield
    client.close()


async def record_stream(stub, user: User, cells, *, version: int = 1) -> None:
    for i in range(0, len(cells), 64):
        items = []
        for label, conf, ood in cells[i:i + 64]:
            p = make_prediction(label, conf, needs_review=conf < 0.85, model_version=version)
            p.ood_score = ood
            items.append(history_pb2.RecordPredictionRequest(prediction=p))
        reply = await stub.RecordPredictions(history_pb2.RecordPredictionsRequest(items=items),
                                             metadata=user.metadata, timeout=T)
        assert all(r.WhichOneof("outcome") == "prediction" for r in reply.results)


async def drift_of(stub, user: User) -> history_pb2.DriftReport:
    return await stub.GetDrift(history_pb2.GetDriftRequest(), metadata=user.metadata, timeout=T)


async def test_a_clean_stream_is_ok_and_a_shifted_one_drifts(stub, published):
    clean_lab, shifted_lab = User.new(), User.new()
    await record_stream(stub, clean_lab, draw(random.Random(1), 300))
    await record_stream(stub, shifted_lab, draw(random.Random(2), 300, ood_shift=3.0, confident=0.5))

    clean = (await drift_of(stub, clean_lab)).items
    assert len(clean) == 1 and clean[0].organization_id == clean_lab.organization_id
    assert clean[0].cells == 300 and clean[0].status == "ok", clean[0]
    assert clean[0].score < drift.WATCH_THRESHOLD

    report = await drift_of(stub, shifted_lab)
    (item,) = report.items
    assert item.status == "drifting" and item.score >= drift.DRIFTING_THRESHOLD
    comps = {c.component: c for c in item.components}
    assert list(comps) == list(drift.COMPONENTS)
    assert comps["ood_score"].status == "drifting" and comps["class_mix"].status == "ok"
    assert item.score == pytest.approx(max(comps["ood_score"].score, comps["confidence"].score))
    # the member sees the histograms: live and reference shares over the same bins
    hists = {h.component: h for h in item.histograms}
    assert set(hists) == set(drift.COMPONENTS)
    assert list(hists["class_mix"].bins) == list(CLASS_NAMES)
    for h in hists.values():
        assert len(h.bins) == len(h.live) == len(h.reference)
        assert sum(h.live) == pytest.approx(1.0) and sum(h.reference) == pytest.approx(1.0)
    assert report.min_cells == drift.MIN_CELLS and report.window_days == drift.WINDOW_DAYS
    assert report.drifting_threshold == drift.DRIFTING_THRESHOLD


async def test_the_score_is_the_psi_of_the_counts_postgresql_made(stub, published):
    lab = User.new()
    cells = draw(random.Random(3), 250, ood_shift=1.0)
    await record_stream(stub, lab, cells)
    (item,) = (await drift_of(stub, lab)).items
    comps = REFERENCE["components"]
    want = drift.score_components(REFERENCE, {
        "class_mix": [sum(1 for c in cells if c[0] == lab_) for lab_ in comps["class_mix"]["labels"]],
        "confidence": drift.histogram([c[1] for c in cells], comps["confidence"]["edges"]),
        "ood_score": drift.histogram([c[2] for c in cells], comps["ood_score"]["edges"]),
    })
    assert {c.component: c.score for c in item.components} == pytest.approx(want, abs=1e-9)


async def test_too_few_cells_and_no_reference_give_no_score(stub, published):
    small, unknown = User.new(), User.new()
    await record_stream(stub, small, draw(random.Random(4), drift.MIN_CELLS - 1, ood_shift=5.0))
    (item,) = (await drift_of(stub, small)).items
    assert item.status == "too_few_cells" and item.score == 0 and not item.histograms
    assert item.cells == drift.MIN_CELLS - 1
    await record_stream(stub, unknown, draw(random.Random(5), drift.MIN_CELLS), version=9)
    (item,) = (await drift_of(stub, unknown)).items
    assert item.status == "no_reference" and item.model_version == 9


async def test_platform_staff_see_every_organization_as_scores_only(stub, published):
    a, b = User.new(), User.new()
    await record_stream(stub, a, draw(random.Random(6), 220))
    await record_stream(stub, b, draw(random.Random(8), 220, ood_shift=3.0))
    for role in ("platform_admin", "ml_engineer"):
        items = {i.organization_id: i for i in (await drift_of(stub, User.new(role=role))).items}
        assert {a.organization_id, b.organization_id} <= set(items)
        assert items[b.organization_id].status == "drifting"
        assert all(not i.histograms for i in items.values())  # never an organization's labels
    # a member sees only its own organization
    assert {i.organization_id for i in (await drift_of(stub, a)).items} == {a.organization_id}


async def test_a_caller_without_organization_or_staff_role_is_refused(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await drift_of(stub, User.new(organization_id="", role="lab_user"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_drift_metric_per_organization_and_component(stub, published):
    lab = User.new()
    await record_stream(stub, lab, draw(random.Random(9), 240, ood_shift=3.0))
    values = {}
    for family in REGISTRY.collect():
        if family.name == "hemovision_drift_score":
            for s in family.samples:
                values[(s.labels["organization"], s.labels["component"])] = s.value
    assert values[(lab.organization_id, "overall")] >= drift.DRIFTING_THRESHOLD
    assert {c for (o, c) in values if o == lab.organization_id} == {"overall", *drift.COMPONENTS}
