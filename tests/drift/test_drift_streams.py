"""Drift on real answers: the shipped model (models/hemovision/1, its committed PBC val reference)
classifies a clean stream of PBC test cells and a stain-shifted one (bench/shift's HED shift,
haematoxylin +30 %, eosin -20 %: another lab's staining), the way serving does (the version's spec
through the C++ pipeline, `serving_default`); each stream is recorded for its own organization
into a real history server (PostgreSQL, Redis), and GetDrift / hemovision_drift_score must call the
shifted lab "drifting" and the clean one "ok"."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import redis
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision_contracts import CLASS_NAMES, drift
from hemovision_grpc_server import create_channel
from hemovision_telemetry.metrics import REGISTRY
from hemovision_testkit.tokens import TokenFactory
from hemovision_tokens import bearer_metadata

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "hemovision" / "1"
DATA = REPO.parent / "shared" / "data" / "pbc_128"
CELLS = 400  # per stream: above drift.MIN_CELLS
TOKENS = TokenFactory()
T = 20


def _shifts():
    spec = importlib.util.spec_from_file_location("bench_shifts", REPO / "bench" / "shift" / "shifts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def streams():
    """(clean, shifted): the model's (probabilities, ood_score) on two disjoint seeded samples of PBC test."""
    if not (DATA / "splits.csv").is_file():
        pytest.fail(f"the PBC data set is required at {DATA}", pytrace=False)
    from hemovision_pixels import decode_image
    from hemovision_training.ml.drift_reference import model_outputs

    rows = [r for r in csv.DictReader(open(DATA / "splits.csv")) if r["split"] == "test"]
    order = np.random.default_rng(20261207).permutation(len(rows))
    clean_rows, shifted_rows = [rows[i] for i in order[:CELLS]], [rows[i] for i in order[CELLS:2 * CELLS]]
    shifts = _shifts()
    hed = shifts.SHIFTS["stain_hed"]["H+30% E-20%"]
    clean = [decode_image((DATA / r["path"]).read_bytes()) for r in clean_rows]
    shifted = [hed(decode_image((DATA / r["path"]).read_bytes()), shifts.rng_for("stain_hed", i))
               for i, r in enumerate(shifted_rows)]
    return model_outputs(MODEL, clean), model_outputs(MODEL, shifted)


@pytest.fixture
async def history(postgres_url, redis_url, tmp_path):
    from hemovision_history.__main__ import migrate
    from hemovision_history.blobstore import LocalBlobStore
    from hemovision_history.server import create_server
    from hemovision_history.settings import Settings
    from hemovision_training.ml.drift_reference import read_reference

    settings = Settings(port=0, database_url=postgres_url, blob_root=str(tmp_path / "blobs"), db_pool_size=2,
                        redis_url=redis_url)
    migrate(settings)
    reference = read_reference(MODEL)
    assert reference is not None, "models/hemovision/1 must carry its drift reference"
    client = redis.Redis.from_url(redis_url)
    client.set(drift.reference_key("hemovision", 1), json.dumps(reference))  # as training publishes it
    client.close()
    server = await create_server(settings, verifier=TOKENS.verifier(redis_url=redis_url),
                                 blobs=LocalBlobStore(settings.blob_root))
    channel = create_channel(f"127.0.0.1:{server.port}")
    yield history_pb2_grpc.HistoryServiceStub(channel)
    await channel.close()
    await server.stop(0)


def member() -> tuple[str, tuple]:
    import uuid

    org = str(uuid.uuid4())
    return org, bearer_metadata(TOKENS.issue(user_id=str(uuid.uuid4()), organization_id=org, role="lab_user"))


async def record(stub, metadata, outputs) -> None:
    probs, ood = outputs
    for i in range(0, len(probs), 64):
        items = []
        for p, o in zip(probs[i:i + 64], ood[i:i + 64]):
            p = p.astype(np.float64) / p.sum()
            label = CLASS_NAMES[int(p.argmax())]
            items.append(history_pb2.RecordPredictionRequest(prediction=history_pb2.Prediction(
                label=label, confidence=float(p.max()), probabilities=dict(zip(CLASS_NAMES, map(float, p))),
                needs_review=bool(p.max() < 0.8524), model=common_pb2.ModelRef(name="hemovision", version=1),
                temperature=1.19, ood_score=float(o), image_sha256="ab" * 32, filename="cell.jpg")))
        reply = await stub.RecordPredictions(history_pb2.RecordPredictionsRequest(items=items), metadata=metadata,
                                             timeout=T)
        assert all(r.WhichOneof("outcome") == "prediction" for r in reply.results), reply


async def test_stain_shifted_cells_drift_and_clean_cells_do_not(history, streams):
    clean_org, clean_md = member()
    shifted_org, shifted_md = member()
    await record(history, clean_md, streams[0])
    await record(history, shifted_md, streams[1])

    (clean,) = (await history.GetDrift(history_pb2.GetDriftRequest(), metadata=clean_md, timeout=T)).items
    (shifted,) = (await history.GetDrift(history_pb2.GetDriftRequest(), metadata=shifted_md, timeout=T)).items
    scores = {name: ({c.component: round(c.score, 3) for c in item.components}, round(item.score, 3))
              for name, item in (("clean", clean), ("shifted", shifted))}
    print("drift scores (PSI):", scores)
    assert clean.cells == shifted.cells == CELLS
    assert clean.status == "ok" and clean.score < drift.WATCH_THRESHOLD, scores
    assert shifted.status == "drifting" and shifted.score >= drift.DRIFTING_THRESHOLD, scores
    # the input statistic is what moves: the stain changes what the model sees
    ood = {c.component: c for c in shifted.components}["ood_score"]
    assert ood.status == "drifting", scores

    metric = {s.labels["organization"]: s.value for f in REGISTRY.collect() if f.name == "hemovision_drift_score"
              for s in f.samples if s.labels["component"] == "overall"}
    assert metric[shifted_org] >= drift.DRIFTING_THRESHOLD > drift.WATCH_THRESHOLD > metric[clean_org]
