"""Drift references at registration: `register-existing` gives a version exported without one (like
the shipped v1) a reference computed from PBC val through its SavedModel, written beside
hemovision.json, and publishes every registered version's reference to Redis where history reads it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import redis
from hemovision_contracts import CLASS_NAMES, drift

from hemovision_database import run_migrations
from hemovision_training.__main__ import MIGRATIONS_DIR, main
from hemovision_training.ml import drift_reference as dr

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "models" / "hemovision" / "1"
PBC = REPO.parent / "shared" / "data" / "pbc_128"


@pytest.fixture
def model_base(tmp_path) -> Path:
    """A copy of the shipped version without its committed reference (an "old" export)."""
    target = tmp_path / "models" / "hemovision" / "1"
    shutil.copytree(SHIPPED, target, ignore=shutil.ignore_patterns(dr.SIDECAR_FILE))
    assert dr.read_reference(target) is None
    return tmp_path / "models"


@pytest.fixture
def small_pbc(tmp_path) -> Path:
    """8 classes x (1 train + 3 val) PBC images: a data folder the index accepts (copied to tmp)."""
    rows = list(csv.DictReader(open(PBC / "splits.csv")))
    out = tmp_path / "pbc"
    kept = []
    for c in CLASS_NAMES:
        mine = [r for r in rows if r["label"] == c]
        kept += [r for r in mine if r["split"] == "train"][:1] + [r for r in mine if r["split"] == "val"][:3]
    for r in kept:
        (out / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PBC / r["path"], out / r["path"])
    with open(out / "splits.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "split"])
        w.writeheader()
        w.writerows({k: r[k] for k in ("path", "label", "split")} for r in kept)
    return out


def test_register_existing_computes_and_publishes_the_reference(postgres_url, runtime_url, redis_url, model_base,
                                                                small_pbc, monkeypatch, capsys):
    run_migrations(migrations_dir=MIGRATIONS_DIR, url=postgres_url, schema="training")
    for key, value in {"HV_TRAINING_DATABASE_URL": runtime_url, "HV_MODEL_BASE": str(model_base),
                       "HV_TRAINING_REDIS_URL": redis_url, "HV_TRAINING_REPLAY_DATA_DIR": str(small_pbc)}.items():
        monkeypatch.setenv(key, value)
    assert main(["register-existing"]) == 0
    out = capsys.readouterr().out
    assert "registered [1]" in out and "drift references published for [1]" in out

    version = model_base / "hemovision" / "1"
    sidecar = json.loads((version / "assets.extra" / dr.SIDECAR_FILE).read_text())
    assert sidecar["n"] == 24 and "computed at registration" in sidecar["source"]
    assert sum(sidecar["components"]["class_mix"]["counts"]) == 24
    # the model's answers on 3 PBC val cells per class (it calls one of these 24 a monocyte)
    assert sum(abs(n - 3) for n in sidecar["components"]["class_mix"]["counts"]) <= 2
    client = redis.Redis.from_url(redis_url)
    published = json.loads(client.get(drift.reference_key("hemovision", 1)))
    client.close()
    assert published == sidecar

    # a second run registers nothing, computes nothing (the sidecar is read) and publishes again
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    shutil.rmtree(small_pbc)
    assert main(["register-existing"]) == 0
    assert "drift references published for [1]" in capsys.readouterr().out


def test_the_shipped_version_carries_its_committed_reference():
    ref = dr.read_reference(SHIPPED)
    assert ref is not None and ref["n"] == 1711 and ref["source"].startswith("PBC val (1711 cells)")
    comps = ref["components"]
    assert comps["class_mix"]["labels"] == list(CLASS_NAMES) and sum(comps["class_mix"]["counts"]) == 1711
    assert comps["confidence"]["edges"] == list(drift.CONFIDENCE_EDGES)
    assert len(comps["ood_score"]["edges"]) == drift.OOD_SCORE_BINS - 1
    assert all(abs(n - 1711 / 10) <= 2 for n in comps["ood_score"]["counts"])  # deciles of the reference
