"""Backup and restore (issue 20 item 7): a system's PostgreSQL (every schema, migrated by the
services' own commands), blob store and model base, backed up and restored into an EMPTY
database and directories, answer the same history — predictions, reviews, stored images — and
render the same report; a restore never writes into a database that already holds HemoVision."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from hemovision.common.v1 import common_pb2
from hemovision.history.v1 import history_pb2, history_pb2_grpc
from hemovision.reports.v1 import reports_pb2, reports_pb2_grpc
from hemovision_contracts import CLASS_NAMES
from hemovision_database import drop_database
from hemovision_grpc_server import create_channel
from hemovision_history.blobstore import LocalBlobStore
from hemovision_history.server import create_server as create_history_server
from hemovision_history.settings import Settings as HistorySettings
from hemovision_reports.server import create_server as create_reports_server
from hemovision_reports.settings import Settings as ReportsSettings
from hemovision_testkit.tokens import TokenFactory
from hemovision_tokens import bearer_metadata
from PIL import Image
from pypdf import PdfReader

from hemovision_devstack.backup import BackupError, Stores, backup, restore
from hemovision_devstack.cli import main as devstack_main

TOKENS = TokenFactory()
T = 10


def _migrate(url: str) -> None:
    """Every schema, by the services' own `migrate` commands (as `make up` does)."""
    env = {**os.environ, "HV_DATABASE_URL": url, "HV_ENV": "development"}
    for service in ("hemovision_auth", "hemovision_history", "hemovision_training"):
        done = subprocess.run([sys.executable, "-m", service, "migrate"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _prediction(label: str, confidence: float) -> history_pb2.Prediction:
    rest = (1.0 - confidence) / (len(CLASS_NAMES) - 1)
    return history_pb2.Prediction(
        label=label, confidence=confidence, probabilities={c: confidence if c == label else rest for c in CLASS_NAMES},
        model=common_pb2.ModelRef(name="hemovision", version=1), filename=f"{label}.png", sample_id="S-7")


class System:
    """history + reports on one database and blob root, as the stack runs them."""

    def __init__(self, url: str, blobs: Path, redis_url: str) -> None:
        self.url, self.blobs, self.redis_url = url, blobs, redis_url

    async def __aenter__(self) -> System:
        settings = HistorySettings(port=0, database_url=self.url, blob_root=str(self.blobs), db_pool_size=2)
        self.history = await create_history_server(settings, verifier=TOKENS.verifier(redis_url=self.redis_url),
                                                   blobs=LocalBlobStore(settings.blob_root))
        self.reports = await create_reports_server(
            ReportsSettings(port=0, history_addr=f"127.0.0.1:{self.history.port}", auth_addr="", call_timeout_s=10),
            verifier=TOKENS.verifier(redis_url=self.redis_url))
        self.channels = [create_channel(f"127.0.0.1:{s.port}") for s in (self.history, self.reports)]
        self.h = history_pb2_grpc.HistoryServiceStub(self.channels[0])
        self.r = reports_pb2_grpc.ReportsServiceStub(self.channels[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for channel in self.channels:
            await channel.close()
        await self.reports.stop(0)
        await self.history.stop(0)

    async def answers(self, md, ids: list[str]) -> tuple:
        """What a user sees: the list, each record with its review, its stored image, its report."""
        page = await self.h.ListPredictions(history_pb2.ListPredictionsRequest(), metadata=md, timeout=T)
        listed = sorted((p.id, p.label, p.reviewed_label, round(p.confidence, 6)) for p in page.items)
        images = [(await self.h.GetPredictionBlob(history_pb2.GetPredictionBlobRequest(
            prediction_id=i, kind=history_pb2.BLOB_KIND_IMAGE), metadata=md, timeout=T)).data for i in ids]
        reports = []
        for i in ids:
            pdf = (await self.r.RenderPredictionReport(reports_pb2.RenderPredictionReportRequest(prediction_id=i),
                                                       metadata=md, timeout=T)).pdf
            text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
            # the footer's "generated <time>" is the only thing that differs between renderings
            reports.append("\n".join(line for line in text.splitlines() if "generated" not in line))
        return listed, images, reports


@pytest.fixture
def databases():
    server = os.environ.get("HV_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
    urls = [f"{server}/hv_backup_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield urls
    for url in urls:
        drop_database(url)


async def test_a_backup_restored_into_an_empty_system_answers_the_same(databases, tmp_path, redis_url, capsys):
    source_url, target_url = databases
    from hemovision_database import ensure_database

    ensure_database(source_url)
    _migrate(source_url)
    source = Stores(source_url, tmp_path / "a" / "blobs", tmp_path / "a" / "models")
    (source.model_base / "hemovision" / "1").mkdir(parents=True)
    (source.model_base / "hemovision" / "1" / "saved_model.pb").write_bytes(b"a model's bytes")
    org = str(uuid.uuid4())
    md = bearer_metadata(TOKENS.issue(user_id=str(uuid.uuid4()), organization_id=org, role="org_admin"))

    async with System(source.database_url, source.blob_root, redis_url) as a:
        ids = []
        for seed, (label, conf) in enumerate([("neutrophil", 0.91), ("eosinophil", 0.64)]):
            stored = await a.h.RecordPrediction(history_pb2.RecordPredictionRequest(
                prediction=_prediction(label, conf), image_png=_png(seed), heatmap_png=_png(seed + 10)),
                metadata=md, timeout=T)
            ids.append(stored.id)
        await a.h.ReviewPrediction(history_pb2.ReviewPredictionRequest(id=ids[1], label="basophil",
                                                                       comment="granules"), metadata=md, timeout=T)
        before = await a.answers(md, ids)

    # through the command line, as an operator runs it
    out = tmp_path / "backup"
    assert devstack_main(["backup", str(out), "--database-url", source_url, "--var-dir", str(tmp_path / "a"),
                          "--model-base", str(source.model_base)]) == 0
    assert "2 history.predictions" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"database.dump", "blobs", "models", "manifest.json"}

    target = Stores(target_url, tmp_path / "b" / "blobs", tmp_path / "b" / "models")
    counts = restore(out, target)
    assert counts["history.predictions"] == 2
    assert (target.model_base / "hemovision" / "1" / "saved_model.pb").read_bytes() == b"a model's bytes"
    async with System(target.database_url, target.blob_root, redis_url) as b:
        after = await b.answers(md, ids)
    assert after == before
    assert [row[2] for row in before[0]].count("basophil") == 1  # the review is part of what came back

    # never into a system that has data: the database (schemas present) and the directories
    with pytest.raises(BackupError, match="already has the schemas"):
        restore(out, Stores(target_url, tmp_path / "c" / "blobs", tmp_path / "c" / "models"))
    with pytest.raises(BackupError, match="not empty"):
        restore(out, target)
    with pytest.raises(BackupError, match="not empty"):
        backup(source, out)
    assert devstack_main(["restore", str(tmp_path / "nothing"), "--database-url", target_url]) == 2
    assert "not a HemoVision backup" in capsys.readouterr().err
