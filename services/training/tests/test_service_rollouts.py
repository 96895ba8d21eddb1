"""Safe rollouts in the registry (issue 18 item 4), through the real in-process gRPC server on a real
PostgreSQL: one running rollout per model (PostgreSQL holds it too), deprecated / adapted / active
candidates refused, promote through the quality gate, abort, an activation ends a rollout, roles,
audit, and the live statistics read back from Redis."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from hemovision.training.v1 import training_pb2
from hemovision_contracts import rollouts as contract
from hemovision_tokens import bearer_metadata
from hemovision_training import repository as repo

NAME = "hemovision"
CANARY, SHADOW = training_pb2.ROLLOUT_MODE_CANARY, training_pb2.ROLLOUT_MODE_SHADOW
RUNNING, PROMOTED, ABORTED = (training_pb2.ROLLOUT_STATUS_RUNNING, training_pb2.ROLLOUT_STATUS_PROMOTED,
                              training_pb2.ROLLOUT_STATUS_ABORTED)


def md(tokens, role="ml_engineer"):
    return bearer_metadata(tokens.issue(role=role))


def add_version(engine, version, *, macro_f1=0.98, ece=0.005, status="registered", org=None, deprecated=False):
    with engine.begin() as conn:
        repo.insert_version(conn, name=NAME, version=version, path=f"/models/{NAME}/{version}",
                            metrics={"macro_f1": macro_f1, "ece": ece}, training_config={}, data_hash="",
                            parent_version=None, created_by="u1", job_id=None, organization_id=org)
        conn.execute(text("UPDATE training.model_versions SET status=:s, was_active=:w, deprecated_at=:d, "
                          "deprecation_reason=:r WHERE version=:v"),
                     {"s": status, "w": status == "active", "v": version,
                      "d": "2026-12-07T00:00:00Z" if deprecated else None, "r": "bad" if deprecated else ""})


def actions(engine):
    with engine.begin() as conn:
        return [r["action"] for r in reversed(repo.list_audit(conn)) if r["target_type"] == "rollout"]


def start(stub, tokens, version, mode=CANARY, percent=10, role="ml_engineer"):
    return stub.StartRollout(training_pb2.StartRolloutRequest(version=version, mode=mode, canary_percent=percent,
                                                              reason="try it"), metadata=md(tokens, role), timeout=10)


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


async def test_start_get_abort_and_one_running_rollout(env, tokens):
    stub, engine, sink, _ = env
    add_version(engine, 1, status="active")
    add_version(engine, 2)
    add_version(engine, 3)
    assert await code_of(stub.GetRollout(training_pb2.GetRolloutRequest(), timeout=10)) == grpc.StatusCode.NOT_FOUND
    r = await start(stub, tokens, 2, percent=10)
    assert (r.status, r.candidate_version, r.baseline_version, r.mode, r.canary_percent) == (RUNNING, 2, 1, CANARY, 10)
    assert r.start_reason == "try it" and r.started_by and not r.HasField("ended_at")
    # Public read (inference polls it without a token), statistics only when asked.
    got = await stub.GetRollout(training_pb2.GetRolloutRequest(), timeout=10)
    assert got.id == r.id and not got.HasField("stats")
    # One running rollout per model: a second is refused, even for another version or mode.
    for version, mode, pct in ((3, SHADOW, 0), (2, CANARY, 20)):
        assert await code_of(start(stub, tokens, version, mode, pct)) == grpc.StatusCode.FAILED_PRECONDITION
    # ... and PostgreSQL holds it outside this code path too.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO training.rollouts (id, name, candidate_version, baseline_version, mode, "
                          "canary_percent) VALUES (gen_random_uuid(), :n, 3, 1, 'shadow', 0)"), {"n": NAME})
    ended = await stub.AbortRollout(training_pb2.AbortRolloutRequest(reason="too slow"), metadata=md(tokens),
                                    timeout=10)
    assert ended.status == ABORTED and ended.end_reason == "too slow" and ended.HasField("ended_at")
    assert ended.HasField("stats")
    assert await code_of(stub.AbortRollout(training_pb2.AbortRolloutRequest(), metadata=md(tokens), timeout=10)) \
        == grpc.StatusCode.FAILED_PRECONDITION
    # The latest one is still readable; a new one may start.
    assert (await stub.GetRollout(training_pb2.GetRolloutRequest(), timeout=10)).status == ABORTED
    s = await start(stub, tokens, 3, SHADOW, 0)
    assert s.mode == SHADOW and s.canary_percent == 0
    assert actions(engine) == ["rollout.start", "rollout.abort", "rollout.start"]
    assert [a for a, _, _ in sink.events] == ["rollout.start", "rollout.abort", "rollout.start"]


async def test_refused_candidates_and_bad_arguments(env, tokens):
    stub, engine, _, _ = env
    add_version(engine, 1, status="active")
    add_version(engine, 2, deprecated=True)
    add_version(engine, 3, org="org-a")
    add_version(engine, 4)
    assert await code_of(start(stub, tokens, 2)) == grpc.StatusCode.FAILED_PRECONDITION  # deprecated
    assert await code_of(start(stub, tokens, 1)) == grpc.StatusCode.FAILED_PRECONDITION  # already active
    assert await code_of(start(stub, tokens, 3)) == grpc.StatusCode.NOT_FOUND  # an organization's version
    assert await code_of(start(stub, tokens, 9)) == grpc.StatusCode.NOT_FOUND
    for mode, pct in ((CANARY, 0), (CANARY, 51), (SHADOW, 5), (training_pb2.ROLLOUT_MODE_UNSPECIFIED, 10)):
        assert await code_of(start(stub, tokens, 4, mode, pct)) == grpc.StatusCode.INVALID_ARGUMENT
    # Roles: lab users and org admins may read, never start, promote or abort.
    for role in ("lab_user", "org_admin"):
        assert await code_of(start(stub, tokens, 4, role=role)) == grpc.StatusCode.PERMISSION_DENIED
    assert (await start(stub, tokens, 4, CANARY, 50, role="platform_admin")).canary_percent == 50
    for rpc in (stub.PromoteRollout(training_pb2.PromoteRolloutRequest(), metadata=md(tokens, "lab_user"), timeout=10),
                stub.AbortRollout(training_pb2.AbortRolloutRequest(), metadata=md(tokens, "org_admin"), timeout=10)):
        assert await code_of(rpc) == grpc.StatusCode.PERMISSION_DENIED
    # Deprecating the candidate aborts its rollout: a deprecated version never rolls out.
    await stub.DeprecateModelVersion(training_pb2.DeprecateModelVersionRequest(version=4, reason="leak"),
                                     metadata=md(tokens), timeout=10)
    got = await stub.GetRollout(training_pb2.GetRolloutRequest(), timeout=10)
    assert got.status == ABORTED and "deprecated" in got.end_reason
    assert actions(engine) == ["rollout.start", "rollout.abort"]


async def test_promote_goes_through_the_gate(env, tokens):
    stub, engine, sink, _ = env
    add_version(engine, 1, macro_f1=0.98, status="active")
    add_version(engine, 2, macro_f1=0.95)  # worse: the gate refuses it
    add_version(engine, 3, macro_f1=0.99)
    await start(stub, tokens, 2, SHADOW, 0)
    assert await code_of(stub.PromoteRollout(training_pb2.PromoteRolloutRequest(), metadata=md(tokens),
                                             timeout=10)) == grpc.StatusCode.FAILED_PRECONDITION
    still = await stub.GetRollout(training_pb2.GetRolloutRequest(), timeout=10)
    assert still.status == RUNNING  # a refused promotion leaves the rollout running
    active = await stub.GetActiveModelVersion(training_pb2.GetActiveModelVersionRequest(), timeout=10)
    assert active.version == 1
    await stub.AbortRollout(training_pb2.AbortRolloutRequest(), metadata=md(tokens), timeout=10)
    await start(stub, tokens, 3, CANARY, 25)
    promoted = await stub.PromoteRollout(training_pb2.PromoteRolloutRequest(reason="looks good"),
                                         metadata=md(tokens), timeout=10)
    assert promoted.status == PROMOTED and promoted.candidate_version == 3
    active = await stub.GetActiveModelVersion(training_pb2.GetActiveModelVersionRequest(), timeout=10)
    assert active.version == 3
    assert actions(engine) == ["rollout.start", "rollout.abort", "rollout.start", "rollout.promote"]
    forwarded = [a for a, _, _ in sink.events]
    assert "model.activate" in forwarded and forwarded[-1] == "rollout.promote"
    assert await code_of(stub.PromoteRollout(training_pb2.PromoteRolloutRequest(), metadata=md(tokens),
                                             timeout=10)) == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_activation_ends_a_running_rollout(env, tokens):
    stub, engine, _, _ = env
    add_version(engine, 1, status="active")
    add_version(engine, 2)
    add_version(engine, 3)
    r = await start(stub, tokens, 2, CANARY, 10)
    await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=3), metadata=md(tokens),
                                    timeout=10)
    got = await stub.GetRollout(training_pb2.GetRolloutRequest(), timeout=10)
    assert got.id == r.id and got.status == ABORTED and got.end_reason == "version 3 was activated"
    # Activating the candidate directly counts as promoting it.
    r = await start(stub, tokens, 2, SHADOW, 0)
    assert r.baseline_version == 3
    await stub.ActivateModelVersion(training_pb2.ActivateModelVersionRequest(version=2), metadata=md(tokens),
                                    timeout=10)
    got = await stub.GetRollout(training_pb2.GetRolloutRequest(), timeout=10)
    assert got.id == r.id and got.status == PROMOTED
    assert actions(engine) == ["rollout.start", "rollout.abort", "rollout.start", "rollout.promote"]


async def test_racing_starts_leave_one_running(env, tokens):
    stub, engine, _, _ = env
    add_version(engine, 1, status="active")
    for v in (2, 3, 4, 5):
        add_version(engine, v)
    results = await asyncio.gather(*(start(stub, tokens, v, CANARY, 5) for v in (2, 3, 4, 5)),
                                   return_exceptions=True)
    ok = [r for r in results if not isinstance(r, Exception)]
    assert len(ok) == 1
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in results if isinstance(r, Exception))
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM training.rollouts WHERE status='running'")).scalar() == 1


async def test_live_statistics_from_redis(env, tokens, redis_url):
    stub, engine, _, _ = env
    add_version(engine, 1, status="active")
    add_version(engine, 2)
    r = await start(stub, tokens, 2, SHADOW, 0)
    client = redis.Redis.from_url(redis_url)
    key = contract.rollout_stats_key(r.id)
    fields = {contract.requests_field("baseline"): 100, contract.requests_field("candidate"): 90,
              contract.cells_field("baseline"): 100, contract.cells_field("candidate"): 90,
              contract.AGREE_FIELD: 81, contract.DISAGREE_FIELD: 9, contract.SHADOW_DROPPED_FIELD: 10,
              contract.latency_field("baseline", contract.latency_bucket(8)): 100,
              contract.latency_field("candidate", contract.latency_bucket(40)): 90}
    client.hset(key, mapping=fields)
    try:
        got = await stub.GetRollout(training_pb2.GetRolloutRequest(with_stats=True), timeout=10)
    finally:
        client.delete(key)
        client.close()
    st = got.stats
    assert st.available and st.compared_cells == 90 and st.agree_cells == 81
    assert st.agreement_rate == pytest.approx(0.9) and st.shadow_dropped == 10
    base, cand = st.versions
    assert (base.role, base.version, base.requests) == ("baseline", 1, 100)
    assert (cand.role, cand.version, cand.requests) == ("candidate", 2, 90)
    assert 7.5 < base.latency_p50_ms <= 10 and 30 < cand.latency_p95_ms <= 50
