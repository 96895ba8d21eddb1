"""GET /api/v1/drift through the real app to a real history server (PostgreSQL, Redis): a member
gets its organization's entry with the histograms, platform staff every organization's scores
without histograms, and the statuses and thresholds come through unchanged."""

from __future__ import annotations

import json
import random

import pytest
import redis
from gateway_fakes import auth
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision_contracts import CLASS_NAMES, drift
from hemovision_grpc_server import create_channel
from hemovision_tokens import bearer_metadata

rng = random.Random(11)
REF_OOD = [rng.gauss(-12, 2) for _ in range(1000)]
REFERENCE = drift.build_reference(labels=[CLASS_NAMES[i % 8] for i in range(1000)], class_names=CLASS_NAMES,
                                  confidences=[0.995] * 1000, ood_scores=REF_OOD, source="test")


@pytest.fixture
async def history_addr(postgres_url, redis_url, tmp_path, world):
    from hemovision_history.__main__ import migrate
    from hemovision_history.blobstore import LocalBlobStore
    from hemovision_history.server import create_server
    from hemovision_history.settings import Settings as HistorySettings

    hs = HistorySettings(port=0, database_url=postgres_url, blob_root=str(tmp_path / "blobs"), db_pool_size=2,
                         redis_url=redis_url)
    migrate(hs)
    r = redis.Redis.from_url(redis_url)
    r.set(drift.reference_key("hemovision", 1), json.dumps(REFERENCE))
    r.close()
    server = await create_server(hs, verifier=world.factory.verifier(redis_url=redis_url),
                                 blobs=LocalBlobStore(hs.blob_root))
    yield f"127.0.0.1:{server.port}"
    await server.stop(0)


@pytest.fixture
def settings(settings, history_addr):
    return settings.model_copy(update={"history_addr": history_addr})


async def record(addr: str, token: str, n: int, ood_shift: float) -> None:
    channel = create_channel(addr)
    stub = history_pb2_grpc.HistoryServiceStub(channel)
    for start in range(0, n, 64):
        items = []
        for i in range(start, min(n, start + 64)):
            label = CLASS_NAMES[i % 8]
            probs = {c: (0.993 if c == label else 0.001) for c in CLASS_NAMES}
            items.append(history_pb2.RecordPredictionRequest(prediction=history_pb2.Prediction(
                label=label, confidence=0.993, probabilities=probs, model=common_pb2.ModelRef(name="hemovision", version=1),
                temperature=1.2, ood_score=rng.gauss(-12 + ood_shift, 2), image_sha256="ab" * 32, filename="c.png")))
        await stub.RecordPredictions(history_pb2.RecordPredictionsRequest(items=items), metadata=bearer_metadata(token),
                                     timeout=10)
    await channel.close()


async def test_members_see_their_drift_and_staff_every_organizations_scores(client, world, history_addr):
    lab, lab_token = world.user("lab_user")
    _, other_token = world.user("org_admin")
    await record(history_addr, lab_token, 250, ood_shift=4.0)
    await record(history_addr, other_token, 230, ood_shift=0.0)

    r = await client.get("/api/v1/drift", headers=auth(lab_token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["min_cells"] == drift.MIN_CELLS and body["drifting_threshold"] == drift.DRIFTING_THRESHOLD
    (item,) = body["items"]
    assert item["organization_id"] == lab.organization_id and item["cells"] == 250
    assert item["status"] == "drifting" and item["score"] >= drift.DRIFTING_THRESHOLD
    assert [c["component"] for c in item["components"]] == list(drift.COMPONENTS)
    assert {h["component"] for h in item["histograms"]} == set(drift.COMPONENTS)

    _, staff_token = world.user("platform_admin")
    staff = (await client.get("/api/v1/drift", headers=auth(staff_token))).json()["items"]
    assert {i["organization_id"] for i in staff} >= {lab.organization_id}
    assert all(i["histograms"] == [] for i in staff)
    assert {i["status"] for i in staff} <= {"ok", "watch", "drifting"}


async def test_drift_needs_a_signed_in_caller(client):
    assert (await client.get("/api/v1/drift")).status_code == 401
