"""Registry, quality gate, activation, rollback, roles and racing activations, through the real
in-process gRPC server on a real PostgreSQL (schema migrated by the service's own Alembic)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from hemovision.training.v1 import training_pb2, training_pb2_grpc
from hemovision_tokens import bearer_metadata
from hemovision_training import registry
from hemovision_training import repository as repo
from hemovision_training.server import create_server
from hemovision_training.settings import Settings
from training_fakes import RecordingSink

NAME = "hemovision"


def md(tokens, role, user_id=None):
    return bearer_metadata(tokens.issue(role=role, user_id=user_id))


def add_version(engine, version, *, macro_f1, ece, status="registered", was_active=False):
    with engine.begin() as conn:
        repo.insert_version(conn, name=NAME, version=version, path=f"/models/{NAME}/{version}",
                            metrics={"macro_f1": macro_f1, "ece": ece, "accuracy": macro_f1},
                            training_config={"epochs": 1}, data_hash="sha256:x", parent_version=None,
                            created_by="u1", job_id=None)
        if status != "registered" or was_active:
            conn.execute(text("UPDATE training.model_versions SET status=:s, was_active=:w WHERE version=:v"),
                         {"s": status, "w": was_active, "v": version})


def audit_actions(engine):
    with engine.begin() as conn:
        return [(r["action"], r["target_id"], r["user_id"], r["forwarded"]) for r in reversed(repo.list_audit(conn))]


async def test_list_get_active_and_public_active(env, tokens):
    stub, engine, _, _ = env
    add_version(engine, 1, macro_f1=0.97, ece=0.005, status="active", was_active=True)
    add_version(engine, 2, macro_f1=0.98, ece=0.004)
    reply = await stub.ListModelVersions(training_pb2.ListModelVersionsRequest(), metadata=md(tokens, "lab_user"),
                                         timeout=10)
    assert [v.version for v in reply.versions] == [2, 1]
    assert reply.versions[1].status == training_pb2.VERSION_STATUS_ACTIVE
    assert reply.versions[0].metrics["macro_f1"] == pytest.approx(0.98)
    assert reply.versions[0].training_config["epochs"] == 1
    # GetActiveModelVersion is public: inference replicas call it without a token.
    active = await stub.GetActiveModelVersion(training_pb2.GetActiveModelVersionRequest(), timeout=10)
    assert active.version == 1 and active.was_active
    one = await stub.GetModelVersion(training_pb2.GetModelVersionRequest(version=2), metadata=md(tokens, "lab_user"),
                                     timeout=10)
    assert one.version == 2
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetModelVersion(training_pb2.GetModelVersionRequest(version=9), metadata=md(tokens, "lab_user"),
                                   timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListModelVersions(training_pb2.ListModelVersionsRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_no_active_version_is_not_found(env):
    stub, _, _, _ = env
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetActiveModelVersion(training_pb2.GetActiveModelVersionRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_gate_refuses_worse_model_force_and_rollback_are_audited(env, tokens):
    stub, engine, sink, _ = env
    add_version(engine, 1, macro_f1=0.98, ece=0.005, status="active", was_active=True)
    add_version(engine, 2, macro_f1=0.95, ece=0.004)  # worse macro-F1
    add_version(engine, 3, macro_f1=0.99, ece=0.05)  # ECE over the limit
    eng = md(tokens, "ml_engineer", user_id="11111111-1111-1111-1111-111111111111")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=2), metadata=eng, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "macro_f1 0.9500 is below the active version 1's 0.9800" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=3), metadata=eng, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ECE 0.0500 is above the limit 0.0100" in info.value.details()
    # force is platform_admin only
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=2, force=True),
                                        metadata=eng, timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    active = await stub.GetActiveModelVersion(training_pb2.GetActiveModelVersionRequest(), timeout=10)
    assert active.version == 1  # nothing changed

    admin_token = tokens.issue(role="platform_admin", user_id="22222222-2222-2222-2222-222222222222")
    v2 = await stub.ActivateModelVersion(
        training_pb2.ActivateModelVersionRequest(version=2, force=True, reason="hotfix"),
        metadata=bearer_metadata(admin_token), timeout=10)
    assert v2.status == training_pb2.VERSION_STATUS_ACTIVE and v2.was_active
    listed = {v.version: v.status for v in (await stub.ListModelVersions(
        training_pb2.ListModelVersionsRequest(), metadata=eng, timeout=10)).versions}
    assert listed == {1: training_pb2.VERSION_STATUS_RETIRED, 2: training_pb2.VERSION_STATUS_ACTIVE,
                      3: training_pb2.VERSION_STATUS_REGISTERED}

    # Rolling back to version 1 (was active) is allowed although... it is better anyway; roll
    # back to 2 afterwards, which is WORSE than 1: still allowed, because it was active before.
    v1 = await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=1, reason="rollback"),
                                         metadata=eng, timeout=10)
    assert v1.status == training_pb2.VERSION_STATUS_ACTIVE
    v2 = await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=2), metadata=eng, timeout=10)
    assert v2.status == training_pb2.VERSION_STATUS_ACTIVE

    actions = audit_actions(engine)
    assert [a[0] for a in actions] == ["model.activate.force", "model.rollback", "model.rollback"]
    assert actions[0][2] == "22222222-2222-2222-2222-222222222222"
    assert all(a[3] for a in actions)  # forwarded to history
    assert sink.events[0] == ("model.activate.force", f"{NAME}:2", admin_token)
    with engine.begin() as conn:
        details = conn.execute(text("SELECT details FROM training.audit_log WHERE action='model.activate.force'")).scalar_one()
    assert details["force"] is True and details["reason"] == "hotfix" and details["gate"]["passed"] is False


async def test_better_model_activates_through_the_gate(env, tokens):
    stub, engine, _, _ = env
    add_version(engine, 1, macro_f1=0.97, ece=0.005, status="active", was_active=True)
    add_version(engine, 2, macro_f1=0.98, ece=0.006)
    v = await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=2),
                                        metadata=md(tokens, "platform_admin"), timeout=10)
    assert v.status == training_pb2.VERSION_STATUS_ACTIVE and v.activated_at.seconds > 0
    assert [a[0] for a in audit_actions(engine)] == ["model.activate"]


async def test_deprecated_version_is_never_activated_until_restored(env, tokens):
    stub, engine, sink, _ = env
    add_version(engine, 1, macro_f1=0.97, ece=0.005, status="retired", was_active=True)
    add_version(engine, 2, macro_f1=0.98, ece=0.004, status="active", was_active=True)
    add_version(engine, 3, macro_f1=0.99, ece=0.004)
    eng = md(tokens, "ml_engineer")

    async def call(method, request, metadata=eng):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(stub, method)(request, metadata=metadata, timeout=10)
        return info.value

    deprecate = training_pb2.DeprecateModelVersionRequest
    # the active version cannot be deprecated; a reason is required; lab users may not
    err = await call("DeprecateModelVersion", deprecate(version=2, reason="old"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "active version" in err.details()
    err = await call("DeprecateModelVersion", deprecate(version=1, reason="  "))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "reason" in err.details()
    err = await call("DeprecateModelVersion", deprecate(version=1, reason="x"), md(tokens, "org_admin"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await call("DeprecateModelVersion", deprecate(version=9, reason="x"))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    v1 = await stub.DeprecateModelVersion(deprecate(version=1, reason="stain drift on lot 42"), metadata=eng,
                                          timeout=10)
    assert v1.deprecated and v1.deprecation_reason == "stain drift on lot 42" and v1.deprecated_at.seconds > 0
    v3 = await stub.DeprecateModelVersion(deprecate(version=3, reason="bad labels"), metadata=eng, timeout=10)
    assert v3.deprecated
    # a rollback to the deprecated version 1 and a (better) activation of 3 are both refused,
    # force included
    err = await call("ActivateModelVersion", training_pb2.ActivateModelVersionRequest(version=1))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "deprecated (stain drift on lot 42)" in err.details()
    err = await call("ActivateModelVersion", training_pb2.ActivateModelVersionRequest(version=3, force=True),
                     md(tokens, "platform_admin"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await stub.GetActiveModelVersion(training_pb2.GetActiveModelVersionRequest(), timeout=10)).version == 2
    listed = {v.version: v.deprecated for v in (await stub.ListModelVersions(
        training_pb2.ListModelVersionsRequest(), metadata=md(tokens, "lab_user"), timeout=10)).versions}
    assert listed == {1: True, 2: False, 3: True}

    restored = await stub.DeprecateModelVersion(deprecate(version=1, restore=True, reason="lot recalled"),
                                                metadata=eng, timeout=10)
    assert not restored.deprecated and restored.deprecation_reason == "" and not restored.HasField("deprecated_at")
    v1 = await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=1), metadata=eng, timeout=10)
    assert v1.status == training_pb2.VERSION_STATUS_ACTIVE
    assert [a[0] for a in audit_actions(engine)] == ["model.deprecate", "model.deprecate", "model.restore",
                                                     "model.rollback"]
    assert [e[0] for e in sink.events] == ["model.deprecate", "model.deprecate", "model.restore", "model.rollback"]
    # PostgreSQL holds the rule too: the active version cannot carry a deprecation
    with pytest.raises(Exception, match="ck_model_versions_active_not_deprecated"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE training.model_versions SET deprecated_at = now() WHERE version = 1"))


async def test_job_series_are_read_from_postgres_at_scrape_time(env):
    from prometheus_client import REGISTRY

    _, engine, _, _ = env
    import uuid

    running = str(uuid.uuid4())
    with engine.begin() as conn:
        for job_id, status, epoch in ((str(uuid.uuid4()), "queued", 0), (running, "running", 3),
                                      (str(uuid.uuid4()), "succeeded", 10)):
            repo.insert_job(conn, job_id=job_id, config={"epochs": 10}, created_by="u", model_name=NAME,
                            total_epochs=10)
            conn.execute(text("UPDATE training.training_jobs SET status=:s, epoch=:e WHERE id=:i"),
                         {"s": status, "e": epoch, "i": job_id})
    for status in ("queued", "running", "succeeded"):
        assert REGISTRY.get_sample_value("hemovision_training_jobs", {"kind": "training", "status": status}) == 1
    assert REGISTRY.get_sample_value("hemovision_training_job_progress",
                                     {"job_id": running, "kind": "training"}) == 0.3


async def test_lab_user_and_org_admin_cannot_activate_or_train(env, tokens):
    stub, engine, _, _ = env
    add_version(engine, 1, macro_f1=0.97, ece=0.005)
    for role in ("lab_user", "org_admin"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=1),
                                            metadata=md(tokens, role), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StartTrainingJob(
                training_pb2.StartTrainingJobRequest(config=training_pb2.TrainingConfig(data_dir="/x", epochs=1)),
                metadata=md(tokens, role), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListTrainingJobs(training_pb2.ListTrainingJobsRequest(), metadata=md(tokens, role), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_racing_activations_never_leave_two_actives(env, tokens):
    stub, engine, _, _ = env
    add_version(engine, 1, macro_f1=0.95, ece=0.005, status="active", was_active=True)
    for v in range(2, 8):
        add_version(engine, v, macro_f1=0.95 + v / 1000, ece=0.005)
    admin = md(tokens, "platform_admin")
    for _ in range(3):
        # the same version from many callers at once, and different versions at once
        calls = [stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=7), metadata=admin,
                                           timeout=20) for _ in range(4)]
        calls += [stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=v), metadata=admin,
                                            timeout=20) for v in range(2, 7)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            if isinstance(r, grpc.aio.AioRpcError):
                # a loser may be refused by the gate against the winner, never anything else
                assert r.code() == grpc.StatusCode.FAILED_PRECONDITION, r.details()
        with engine.begin() as conn:
            actives = conn.execute(text("SELECT version FROM training.model_versions WHERE status='active'")).all()
        assert len(actives) == 1
    # every successful same-version call saw version 7 active
    same = [r for r in results[:4]]
    assert all(not isinstance(r, Exception) and r.version == 7 and r.status == training_pb2.VERSION_STATUS_ACTIVE
               for r in same)
    # the database itself refuses a second active row
    with pytest.raises(Exception, match="uq_model_versions_one_active"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE training.model_versions SET status='active' WHERE version=2"))


async def test_history_down_still_activates_and_keeps_the_audit_row(clean, runtime_url, runtime_engine, redis_url,
                                                                    tokens, tmp_path):
    settings = Settings(port=0, database_url=runtime_url, redis_url=redis_url, model_base=str(tmp_path))
    server = await create_server(settings, engine=runtime_engine, verifier=tokens.verifier(redis_url=redis_url),
                                 audit_sink=RecordingSink(fail=True), start_reaper=False)
    try:
        add_version(clean, 1, macro_f1=0.97, ece=0.005)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = training_pb2_grpc.TrainingServiceStub(ch)
            v = await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=1),
                                                metadata=md(tokens, "ml_engineer"), timeout=10)
        assert v.status == training_pb2.VERSION_STATUS_ACTIVE
        assert [(a[0], a[3]) for a in audit_actions(clean)] == [("model.activate", False)]
    finally:
        await server.stop(0)


def _publish_fake(model_base: Path, version: int, macro_f1: float) -> None:
    d = model_base / NAME / str(version)
    (d / "assets.extra").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"")
    meta = {"metrics": {"test": {"macro_f1": macro_f1, "accuracy": macro_f1, "ece_after": 0.004,
                                 "confusion_matrix": [[1]], "per_class": {"basophil": {"f1": 0.9}}}},
            "data_hash": "sha256:abc", "training": {"epochs": 3}}
    (d / "assets.extra" / "hemovision.json").write_text(json.dumps(meta))


def test_register_existing_registers_missing_and_activates_highest(clean, tmp_path):
    base = tmp_path / "models"
    _publish_fake(base, 1, 0.97)
    _publish_fake(base, 2, 0.98)
    (base / NAME / ".tmp-3-abc").mkdir()  # a half-written export is never registered
    with clean.begin() as conn:
        added, activated, _ = registry.register_existing(conn, model_base=base, name=NAME)
    assert added == [1, 2] and activated == 2
    with clean.begin() as conn:
        versions = {v.version: v for v in repo.list_versions(conn, name=NAME)}
        assert versions[2].status == "active" and versions[2].was_active
        assert versions[2].metrics["ece"] == pytest.approx(0.004)  # from ece_after
        assert versions[2].metrics["per_class.basophil.f1"] == pytest.approx(0.9)
        assert versions[1].status == "registered" and versions[2].data_hash == "sha256:abc"
    _publish_fake(base, 3, 0.99)
    with clean.begin() as conn:
        added, activated, _ = registry.register_existing(conn, model_base=base, name=NAME)
    assert added == [3] and activated is None  # an active version exists: left alone


def test_migrate_command_is_idempotent(postgres_url, runtime_url, monkeypatch):
    """`migrate` signs in through the migrate URL (the owner) while the server's is the runtime role."""
    from hemovision_training.__main__ import main

    monkeypatch.setenv("HV_TRAINING_MIGRATE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("HV_TRAINING_DATABASE_URL", runtime_url)
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0


async def _cli(port, token, *args):
    import os
    import sys

    env = {**os.environ, "HV_TRAINING_ADDR": f"127.0.0.1:{port}", "HV_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hemovision_training", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_models_list_and_activate(clean, runtime_url, runtime_engine, redis_url, tokens, tmp_path):
    settings = Settings(port=0, database_url=runtime_url, redis_url=redis_url, model_base=str(tmp_path))
    server = await create_server(settings, engine=runtime_engine, verifier=tokens.verifier(redis_url=redis_url),
                                 audit_sink=RecordingSink(), start_reaper=False)
    try:
        add_version(clean, 1, macro_f1=0.97, ece=0.005, status="active", was_active=True)
        add_version(clean, 2, macro_f1=0.96, ece=0.005)
        eng = tokens.issue(role="ml_engineer")
        rc, out, _ = await _cli(server.port, tokens.issue(role="lab_user"), "models", "list")
        assert rc == 0 and "active" in out and "0.9700" in out and out.count("\n") == 3
        rc, _, err = await _cli(server.port, eng, "models", "activate", "2")
        assert rc == 2 and "FAILED_PRECONDITION" in err and "macro_f1 0.9600 is below" in err
        rc, out, _ = await _cli(server.port, tokens.issue(role="platform_admin"), "models", "activate", "2",
                                "--force", "--reason", "cli test")
        assert rc == 0 and "version 2 is active" in out
        rc, _, err = await _cli(server.port, eng, "train", "--data", str(tmp_path / "nope"), "--epochs", "1")
        assert rc == 2 and "INVALID_ARGUMENT" in err and "data_dir not found" in err
    finally:
        await server.stop(0)


def test_progress_bar():
    from hemovision_training.cli import progress_bar

    assert progress_bar(0, 4, width=8) == "[--------] 0/4"
    assert progress_bar(2, 4, width=8) == "[####----] 2/4"
    assert progress_bar(4, 4, width=8) == "[########] 4/4"


async def test_history_audit_sink_forwards_with_the_callers_token_and_survives_an_outage():
    """HistoryAuditSink against a gRPC server speaking the real HistoryService contract."""
    from hemovision.history.v1 import history_pb2, history_pb2_grpc
    from hemovision_training.audit import HistoryAuditSink
    from hemovision_training.registry import AuditEvent

    received = []

    class History(history_pb2_grpc.HistoryServiceServicer):
        async def RecordAuditEvent(self, request, context):
            received.append((request, dict(context.invocation_metadata())))
            return history_pb2.AuditEvent(id="e1", action=request.action)

    server = grpc.aio.server()
    history_pb2_grpc.add_HistoryServiceServicer_to_server(History(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    events = [AuditEvent(id=7, action="model.activate.force", target_type="model_version", target_id="hemovision:2",
                         details={"reason": "hotfix"})]
    sink = HistoryAuditSink(f"127.0.0.1:{port}", timeout_s=3)
    try:
        assert await sink.record(events, token="tok-123") == [7]
        request, metadata = received[0]
        assert request.action == "model.activate.force" and request.target_id == "hemovision:2"
        assert json.loads(request.details_json) == {"reason": "hotfix"}
        assert metadata["authorization"] == "Bearer tok-123"
    finally:
        await sink.close()
        await server.stop(0)
    # history down: nothing delivered, no exception, bounded by the deadline
    down = HistoryAuditSink(f"127.0.0.1:{port}", timeout_s=1)
    try:
        assert await asyncio.wait_for(down.record(events, token="tok-123"), timeout=10) == []
    finally:
        await down.close()


async def test_watch_and_get_jobs_need_a_trainer_role(env, tokens):
    stub, _, _, _ = env
    call = stub.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(id="00000000-0000-0000-0000-000000000000"),
                                 metadata=md(tokens, "lab_user"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    call = stub.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(id="00000000-0000-0000-0000-000000000000"),
                                 metadata=md(tokens, "ml_engineer"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_register_existing_command(clean, runtime_url, tmp_path, monkeypatch, capsys):
    from hemovision_training.__main__ import main

    _publish_fake(tmp_path, 4, 0.97)
    monkeypatch.setenv("HV_TRAINING_DATABASE_URL", runtime_url)  # as deployments run it: the runtime role
    monkeypatch.setenv("HV_MODEL_BASE", str(tmp_path))
    assert main(["register-existing"]) == 0
    assert "registered [4]; activated version 4" in capsys.readouterr().out
    assert main(["register-existing"]) == 0
    assert "registered nothing new; active version unchanged" in capsys.readouterr().out


async def test_queued_job_can_be_listed_and_cancelled_once(env, tokens, tmp_path):
    """No worker here: the job stays queued; cancel ends it, a second cancel is refused."""
    data = tiny_dataset(tmp_path / "data")
    stub, engine, sink, _ = env
    eng = md(tokens, "ml_engineer")
    job = await stub.StartTrainingJob(
        training_pb2.StartTrainingJobRequest(config=training_pb2.TrainingConfig(data_dir=str(data), epochs=3)),
        metadata=eng, timeout=30)
    assert job.status == training_pb2.JOB_STATUS_QUEUED and job.phase == "queued"
    assert job.config.batch_size == 64 and job.config.input_size == 64 and job.config.model_name == NAME
    listed = await stub.ListTrainingJobs(training_pb2.ListTrainingJobsRequest(), metadata=eng, timeout=10)
    assert [j.id for j in listed.jobs] == [job.id]
    cancelled = await stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(id=job.id), metadata=eng,
                                             timeout=10)
    assert cancelled.status == training_pb2.JOB_STATUS_CANCELLED and cancelled.finished_at.seconds > 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CancelTrainingJob(training_pb2.CancelTrainingJobRequest(id=job.id), metadata=eng, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # start and cancel are audited (once: the refused second cancel wrote nothing) and forwarded
    assert [(a[0], a[1], a[3]) for a in audit_actions(engine)] == [("training.start", job.id, True),
                                                                   ("training.cancel", job.id, True)]
    assert [e[:2] for e in sink.events] == [("training.start", job.id), ("training.cancel", job.id)]
    # a watch on an ended job sends its state once and ends
    seen = [j async for j in stub.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(id=job.id), metadata=eng,
                                                    timeout=10)]
    assert [j.status for j in seen] == [training_pb2.JOB_STATUS_CANCELLED]


def tiny_dataset(data: Path) -> Path:
    """One real pbc_128 image per class and split."""
    import csv
    import shutil

    pbc = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pbc_128"
    rows, taken = [], set()
    with open(pbc / "splits.csv", newline="") as f:
        for row in csv.DictReader(f):
            if (row["label"], row["split"]) not in taken:
                taken.add((row["label"], row["split"]))
                rows.append(row)
                (data / row["label"]).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(pbc / row["path"], data / row["path"])
    with open(data / "splits.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    return data


async def test_redis_down_start_is_unavailable_and_watch_falls_back_to_polling(clean, runtime_url, runtime_engine,
                                                                                redis_url, tokens, tmp_path):
    settings = Settings(port=0, database_url=runtime_url, redis_url="redis://127.0.0.1:1/0", watch_poll_s=0.5)
    server = await create_server(settings, engine=runtime_engine, verifier=tokens.verifier(redis_url=redis_url),
                                 audit_sink=RecordingSink(), start_reaper=False)
    eng = md(tokens, "ml_engineer")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = training_pb2_grpc.TrainingServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(
                    config=training_pb2.TrainingConfig(data_dir=str(tiny_dataset(tmp_path / "d")), epochs=1)),
                    metadata=eng, timeout=60)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            jobs = (await stub.ListTrainingJobs(training_pb2.ListTrainingJobsRequest(), metadata=eng,
                                                timeout=10)).jobs
            assert [(j.status, j.error) for j in jobs] == [(training_pb2.JOB_STATUS_FAILED,
                                                           "could not enqueue: broker unavailable")]

            job_id = "44444444-4444-4444-4444-444444444444"
            with clean.begin() as conn:
                repo.insert_job(conn, job_id=job_id, config={"epochs": 2}, model_name=NAME, total_epochs=2,
                                created_by="u")

            async def drive():
                await asyncio.sleep(1)
                with clean.begin() as conn:
                    repo.mark_job_running(conn, job_id=job_id)
                await asyncio.sleep(1)
                with clean.begin() as conn:
                    repo.update_job_progress(conn, job_id=job_id, epoch=1, phase="epoch 1/2", metrics={"loss": 1.5})
                await asyncio.sleep(1)
                with clean.begin() as conn:
                    repo.finish_job(conn, job_id=job_id, status=repo.SUCCEEDED, model_version=3)

            driver = asyncio.create_task(drive())
            seen = [j async for j in stub.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(id=job_id),
                                                            metadata=eng, timeout=30)]
            await driver
            statuses = [j.status for j in seen]
            assert statuses[0] == training_pb2.JOB_STATUS_QUEUED and statuses[-1] == training_pb2.JOB_STATUS_SUCCEEDED
            assert any(j.epoch == 1 and j.metrics["loss"] == 1.5 for j in seen)
            assert seen[-1].model_version == 3
    finally:
        await server.stop(0)
