"""Training jobs end to end: the real in-process gRPC server, real PostgreSQL and Redis, and a
REAL Celery worker process (`celery -A hemovision_training.tasks worker -Q training --pool solo`)
running the real ML pipeline on a handful of pbc_128 images.

Order matters (one worker for the module, started once): validation, a tiny successful run,
a data error found by the worker, cancellation, and last a SIGKILL of the worker mid-job.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
import redis
from sqlalchemy import text

from hemovision.training.v1 import training_pb2, training_pb2_grpc
from hemovision_testkit.fixtures import REDIS_SERVER
from hemovision_tokens import bearer_metadata
from hemovision_training.server import create_server
from hemovision_training.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from worker_process import spawn_worker, stop_worker  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
PBC = (REPO / ".." / "shared" / "data" / "pbc_128").resolve()
CLASSES = ["basophil", "eosinophil", "erythroblast", "immature_granulocyte", "lymphocyte", "monocyte",
           "neutrophil", "platelet"]
HEARTBEAT_TIMEOUT_S = 6.0
# The broker lives in its own Redis test database: DB 11 is flushed by every other test module's
# `redis_url` fixture, which would wipe the queue (and kombu's bindings) under a running worker
# when suites run side by side.
BROKER_DB = int(os.environ.get("HV_TEST_TRAINING_REDIS_DB", "14"))
S = training_pb2


class NullSink:
    async def record(self, events, *, token):
        return []


@pytest.fixture(scope="module")
def pbc() -> Path:
    if not (PBC / "splits.csv").is_file():
        pytest.fail(f"the pbc_128 data set is required at {PBC}", pytrace=False)
    return PBC


@pytest.fixture(scope="module")
def module_redis_url():
    url = f"{REDIS_SERVER}/{BROKER_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except Exception as exc:
        pytest.fail(f"Redis is required at {REDIS_SERVER}: {exc}", pytrace=False)
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def model_base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def worker(runtime_url, module_redis_url, model_base, tmp_path_factory):
    """A real Celery worker process on queue `training`, torn down with SIGTERM (SIGKILL if stuck)."""
    work = tmp_path_factory.mktemp("work")
    env = {
        **os.environ,
        "HV_TRAINING_DATABASE_URL": runtime_url,
        "HV_TRAINING_REDIS_URL": module_redis_url,
        "HV_TRAINING_MODEL_BASE": str(model_base),
        "HV_TRAINING_WORK_DIR": str(work),
        "HV_TRAINING_HEARTBEAT_INTERVAL_S": "0.5",
        # a one-epoch model is badly calibrated; let auto-activation through the gate here
        "HV_TRAINING_ECE_LIMIT": "1.0",
        # a tiny network: the point is the service path, not the model
        "HV_TRAINING_TRAIN_OVERRIDES": '{"widths": [8, 16], "blocks": [1, 1], "stem_width": 0, "patience": 1000}',
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "2",
    }
    proc = spawn_worker(env, work / "worker.log")
    yield proc
    stop_worker(proc)


@pytest.fixture
async def stub(runtime_url, runtime_engine, module_redis_url, model_base, tokens):
    settings = Settings(port=0, database_url=runtime_url, redis_url=module_redis_url, model_base=str(model_base),
                        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, reaper_interval_s=0.5, watch_poll_s=1.0,
                        ece_limit=1.0)
    server = await create_server(settings, engine=runtime_engine, verifier=tokens.verifier(redis_url=module_redis_url),
                                 audit_sink=NullSink())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = training_pb2_grpc.TrainingServiceStub(channel)
    stub._port = server.port
    yield stub
    await channel.close()
    await server.stop(0)


@pytest.fixture(scope="module")
def eng_md(tokens):
    return bearer_metadata(tokens.issue(role="ml_engineer", user_id="33333333-3333-3333-3333-333333333333"))


def tiny_dataset(root: Path, pbc: Path, per_class_split: int = 2) -> Path:
    """A few real pbc_128 images per class and split, ImageFolder + splits.csv."""
    rows = []
    with open(pbc / "splits.csv", newline="") as f:
        taken: dict[tuple[str, str], int] = {}
        for row in csv.DictReader(f):
            key = (row["label"], row["split"])
            if taken.get(key, 0) < per_class_split:
                taken[key] = taken.get(key, 0) + 1
                rows.append(row)
    for row in rows:
        dest = root / row["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pbc / row["path"], dest)
    write_splits(root, rows)
    return root


def write_splits(root: Path, rows) -> None:
    with open(root / "splits.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        w.writeheader()
        for r in rows:
            w.writerow({"path": r["path"], "label": r["label"], "split": r["split"]})


def config(data_dir, **kw) -> training_pb2.TrainingConfig:
    base = dict(data_dir=str(data_dir), epochs=1, batch_size=16, input_size=32, seed=1, limit_per_class=4)
    base.update(kw)
    return training_pb2.TrainingConfig(**base)


async def watch_until(stub, md, job_id, predicate, timeout):
    """Streams WatchTrainingJob; returns (all messages, the first matching one) — or the last."""
    seen = []
    call = stub.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(id=job_id), metadata=md, timeout=timeout)
    async for job in call:
        seen.append(job)
        if predicate(job):
            call.cancel()
            return seen, job
    return seen, seen[-1]


def worker_log(worker) -> str:
    return Path(worker.log_path).read_text(errors="replace")[-6000:]


def count_versions(engine) -> int:
    with engine.begin() as conn:
        return conn.execute(text("SELECT count(*) FROM training.model_versions")).scalar_one()


# ----------------------------------------------------------------------------- validation at the door


async def test_bad_configs_are_invalid_argument_and_create_no_job(stub, eng_md, engine, pbc, tmp_path):
    empty_class = tiny_dataset(tmp_path / "empty_class", pbc, 1)
    for p in (empty_class / "platelet").iterdir():
        p.unlink()
    foreign = tiny_dataset(tmp_path / "foreign", pbc, 1)
    (foreign / "blast").mkdir()
    shutil.copyfile(next((foreign / "basophil").iterdir()), foreign / "blast" / "b1.jpg")
    with open(foreign / "splits.csv", "a") as f:
        f.write("blast/b1.jpg,blast,train\n")
    no_splits = tiny_dataset(tmp_path / "no_splits", pbc, 1)
    (no_splits / "splits.csv").unlink()
    cases = [
        (config(tmp_path / "does-not-exist"), "data_dir not found"),
        (config(empty_class), "class folder is empty"),
        (config(foreign), "label 'blast' is not one of the eight classes"),
        (config(no_splits), "missing splits.csv"),
        (config(pbc, epochs=0), "epochs must be between 1 and 500"),
        (config(pbc, epochs=501), "epochs must be between 1 and 500"),
        (config(pbc, input_size=4), "input_size"),
        (config(pbc, parent_version=3), "parent_version is not supported"),
        (config(""), "data_dir is required"),
    ]
    for cfg, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(config=cfg), metadata=eng_md, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (cfg, info.value.details())
        assert message in info.value.details(), info.value.details()
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM training.training_jobs")).scalar_one() == 0


async def test_unknown_job_is_not_found(stub, eng_md):
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetTrainingJob(training_pb2.GetTrainingJobRequest(id=job_id), metadata=eng_md, timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


# ----------------------------------------------------------------------------- a real run on the worker


@pytest.mark.timeout(480)
async def test_tiny_training_run_streams_progress_exports_and_registers(worker, stub, eng_md, engine, pbc,
                                                                        model_base):
    job = await stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(config=config(pbc, auto_activate=True)),
                                      metadata=eng_md, timeout=30)
    assert job.status == S.JOB_STATUS_QUEUED and job.total_epochs == 1
    assert job.created_by == "33333333-3333-3333-3333-333333333333"
    seen, final = await watch_until(stub, eng_md, job.id, lambda j: False, timeout=400)
    assert final.status == S.JOB_STATUS_SUCCEEDED, (final.error, worker_log(worker))
    statuses = [j.status for j in seen]
    assert S.JOB_STATUS_RUNNING in statuses
    assert statuses.index(S.JOB_STATUS_RUNNING) < statuses.index(S.JOB_STATUS_SUCCEEDED)
    progressed = [j for j in seen if j.epoch == 1 and j.status == S.JOB_STATUS_RUNNING]
    assert progressed and "loss" in progressed[0].metrics and progressed[0].phase == "epoch 1/1"
    assert final.model_version == 1 and final.finished_at.seconds >= final.started_at.seconds > 0
    assert {"loss", "test_accuracy", "test_macro_f1", "test_ece"} <= set(final.metrics)

    version = await stub.GetModelVersion(training_pb2.GetModelVersionRequest(version=final.model_version),
                                         metadata=eng_md, timeout=10)
    assert version.job_id == job.id and version.created_by == job.created_by
    assert {"accuracy", "macro_f1", "ece"} <= set(version.metrics)
    assert version.data_hash.startswith("sha256:")
    assert version.training_config["epochs"] == 1
    # the first version of a model passes the gate (ece_limit 1.0 here): auto-activated
    assert version.status == S.VERSION_STATUS_ACTIVE and final.phase == "succeeded (activated)"
    path = Path(version.path)
    assert path == (model_base / "hemovision" / "1").resolve()
    assert (path / "assets.extra" / "hemovision.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]

    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    assert {"serving_default", "explain"} <= set(loaded.signatures.keys())
    out = loaded.signatures["serving_default"](tf.zeros([1, 32, 32, 3], tf.float32))
    assert out["probabilities"].shape == (1, 8)


async def test_corrupt_image_fails_the_job_with_the_reason_and_registers_nothing(worker, stub, eng_md, engine, pbc,
                                                                                 tmp_path, model_base):
    data = tiny_dataset(tmp_path / "corrupt", pbc, 1)
    victim = next((data / "monocyte").iterdir())
    victim.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    before = count_versions(engine)
    dirs_before = sorted(p.name for p in (model_base / "hemovision").iterdir())
    job = await stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(config=config(data, limit_per_class=0)),
                                      metadata=eng_md, timeout=30)
    _, final = await watch_until(stub, eng_md, job.id, lambda j: False, timeout=120)
    assert final.status == S.JOB_STATUS_FAILED, worker_log(worker)
    assert "invalid data set: corrupt or unsupported image" in final.error and victim.name in final.error
    assert count_versions(engine) == before
    assert sorted(p.name for p in (model_base / "hemovision").iterdir()) == dirs_before


async def test_cli_train_wait_shows_progress_and_the_failure(worker, stub, tokens, pbc, tmp_path):
    """`python -m hemovision_training train --wait` against the real server and worker."""
    data = tiny_dataset(tmp_path / "cli", pbc, 1)
    next((data / "platelet").iterdir()).write_bytes(b"GIF89a broken")
    port = stub._port  # set by the fixture
    env = {**os.environ, "HV_TRAINING_ADDR": f"127.0.0.1:{port}",
           "HV_TOKEN": tokens.issue(role="platform_admin")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hemovision_training", "train", "--data", str(data), "--epochs", "2",
        "--input-size", "32", "--wait", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    out, err = out.decode(), err.decode()
    assert proc.returncode == 1, (out, err, worker_log(worker))
    assert "queued" in out and "[------------------------------] 0/2" in out
    assert "JOB_STATUS_FAILED: invalid data set: corrupt or unsupported image" in err


async def _start_long_job(stub, eng_md, pbc):
    job = await stub.StartTrainingJob(
        training_pb2.StartTrainingJobRequest(config=config(pbc, epochs=300, limit_per_class=40)),
        metadata=eng_md, timeout=30)
    _, running = await watch_until(stub, eng_md, job.id,
                                   lambda j: j.epoch >= 1 or j.status not in (S.JOB_STATUS_QUEUED, S.JOB_STATUS_RUNNING),
                                   timeout=300)
    assert running.status == S.JOB_STATUS_RUNNING and running.epoch >= 1, running
    return job


async def test_cancel_stops_a_running_job_at_the_next_epoch(worker, stub, eng_md, engine, pbc):
    before = count_versions(engine)
    job = await _start_long_job(stub, eng_md, pbc)
    cancelled = await stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(id=job.id), metadata=eng_md,
                                             timeout=10)
    assert cancelled.status == S.JOB_STATUS_CANCELLED and "cancelled by" in cancelled.error
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(id=job.id), metadata=eng_md, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # the worker notices at its next epoch and stops: the epoch counter stops moving
    with engine.begin() as conn:
        epoch_then = conn.execute(text("SELECT epoch FROM training.training_jobs WHERE id=:i"), {"i": job.id}).scalar_one()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "stopped: no longer running" not in worker_log(worker):
        await asyncio.sleep(0.5)
    assert "stopped: no longer running" in worker_log(worker)
    with engine.begin() as conn:
        row = conn.execute(text("SELECT status, epoch FROM training.training_jobs WHERE id=:i"), {"i": job.id}).one()
    assert row.status == "cancelled" and row.epoch <= epoch_then + 1
    assert count_versions(engine) == before


async def test_sigkilled_worker_leaves_the_job_failed_with_a_reason(worker, stub, eng_md, engine, pbc):
    job = await _start_long_job(stub, eng_md, pbc)
    worker.send_signal(signal.SIGKILL)  # a real process killed, not an exception
    worker.wait(timeout=10)
    _, final = await watch_until(stub, eng_md, job.id, lambda j: False, timeout=HEARTBEAT_TIMEOUT_S * 6)
    assert final.status == S.JOB_STATUS_FAILED
    assert final.error == f"worker lost (no heartbeat for {HEARTBEAT_TIMEOUT_S:g} s)"
    jobs = await stub.ListTrainingJobs(training_pb2.ListTrainingJobsRequest(limit=10), metadata=eng_md, timeout=10)
    assert jobs.jobs[0].id == job.id
    assert not any(j.status == S.JOB_STATUS_RUNNING for j in jobs.jobs)

    # The killed worker never acknowledged the message (acks_late). A new worker gets it back once
    # the visibility timeout passes (shortened here) and must NOT train the job a second time.
    versions_before = count_versions(engine)
    log_path = Path(worker.log_path).with_name("worker2.log")
    second = spawn_worker({**worker.env, "HV_TRAINING_BROKER_VISIBILITY_TIMEOUT_S": "1"}, log_path)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "is not queued" not in log_path.read_text(errors="replace"):
            await asyncio.sleep(0.5)
        assert f"training job {job.id} is not queued" in log_path.read_text(errors="replace"), \
            log_path.read_text(errors="replace")[-4000:]
    finally:
        stop_worker(second)
    again = await stub.GetTrainingJob(training_pb2.GetTrainingJobRequest(id=job.id), metadata=eng_md, timeout=10)
    assert again.status == S.JOB_STATUS_FAILED and again.error == final.error
    assert count_versions(engine) == versions_before
