"""Safe rollouts (issue 18 item 4) through the embedded model server with two contract versions and a
fake registry: the canary share is honoured within tolerance (organizations with an adapted version
are never canaried), a shadow's answers come only from the active version while the candidate's
agreement is recorded in Redis, and no request fails while rollouts start, promote and abort under
concurrent load."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import numpy as np
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision.common.v1 import common_pb2
from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision_contracts import rollouts as contract
from hemovision_contracts import tensors
from hemovision_inference.server import create_server
from hemovision_inference.settings import Settings
from hemovision_model_server.server import create_model_server
from hemovision_model_server.settings import ModelServerSettings
from hemovision_testkit.contract_model import publish_version
from hemovision_testkit.tokens import TokenFactory
from inference_fakes import FakeRegistry

SIZE = 32
ADAPTED_ORG = "org-adapted"


def request(seed: int, n: int = 1) -> inference_pb2.ClassifyRequest:
    x = np.random.default_rng(seed).normal(0, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
    return inference_pb2.ClassifyRequest(model=common_pb2.ModelRef(name="hemovision"),
                                         images=tensors.to_common_tensor(x))


async def until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def rollout_stack(tmp_path, contract_models, redis_url, **overrides):
    """Active version 1 (seed 1); 2 = seed 2 (other weights), 3 = seed 1 again (same answers as 1),
    4 = org-adapted's own version."""
    base = tmp_path / "models"
    for version, seed in ((1, 1), (2, 2), (3, 1), (4, 1)):
        publish_version(contract_models[seed], base, version)
    model_server = await create_model_server(ModelServerSettings(
        host="127.0.0.1", port=0, rest_port=-1, model_base=str(base), poll_interval_s=0.2, drain_seconds=0.5,
        grace_seconds=0.5))
    registry = FakeRegistry(active=1, organizations={ADAPTED_ORG: 4})
    await registry.start()
    tokens = TokenFactory()
    values = dict(host="127.0.0.1", port=0, model_server_addr=model_server.address, model_base=str(base),
                  training_addr=registry.address, reconcile_interval_s=0.3, drain_seconds=1.0, grace_seconds=1.0,
                  predict_timeout_s=10.0, control_timeout_s=2.0, redis_url=redis_url, rollout_stats_flush_s=0.2)
    values.update(overrides)
    inference = await create_server(Settings(**values), verifier=tokens.verifier())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{inference.port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while (await health.Check(health_pb2.HealthCheckRequest(), timeout=3)).status != \
                health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        yield inference, registry, stub, tokens
    finally:
        await channel.close()
        await inference.stop(0.2)
        await registry.stop()
        await model_server.stop(0.2)


def auth(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def stats(redis_url: str, rollout_id: str) -> dict:
    client = redis.Redis.from_url(redis_url)
    try:
        return contract.read_stats(client.hgetall(contract.rollout_stats_key(rollout_id)))
    finally:
        client.close()


async def test_canary_share_and_routing_order(tmp_path, contract_models, redis_url):
    async with rollout_stack(tmp_path, contract_models, redis_url) as (inference, registry, stub, tokens):
        router = inference.router
        rollout_id = registry.start_rollout(2, percent=20)
        await until(lambda: router.rollout_ready)
        assert 2 in router.pinned
        user = auth(tokens.issue(role="lab_user"))
        n, versions = 600, []
        for start in range(0, n, 20):
            replies = await asyncio.gather(*(stub.Classify(request(i), metadata=user, timeout=20)
                                             for i in range(start, start + 20)))
            versions += [r.model.version for r in replies]
        share = versions.count(2) / n
        print(f"canary 20 %: observed {share:.3f} of {n} requests")
        assert set(versions) == {1, 2}
        assert abs(share - 0.20) < 0.06  # 3.7 standard deviations of a binomial(600, 0.2)
        # The organization's adapted version comes first: never canaried.
        adapted = auth(tokens.issue(role="lab_user", organization_id=ADAPTED_ORG))
        for i in range(20):
            assert (await stub.Classify(request(i), metadata=adapted, timeout=20)).model.version == 4
        # Live statistics: every replica adds its counts to the rollout's Redis hash.
        await until(lambda: sum(stats(redis_url, rollout_id)["requests"].values()) >= n, timeout=5)
        st = stats(redis_url, rollout_id)
        assert st["requests"]["candidate"] == versions.count(2) and st["requests"]["baseline"] == versions.count(1)
        assert contract.percentile_ms(st["latency"]["candidate"], 0.5) > 0
        # Abort: the candidate stops answering at once.
        registry.end_rollout(promote=False)
        await until(lambda: router.rollout is None)
        replies = await asyncio.gather(*(stub.Classify(request(i), metadata=user, timeout=20) for i in range(40)))
        assert {r.model.version for r in replies} == {1}


async def test_shadow_answers_from_active_and_records_agreement(tmp_path, contract_models, redis_url):
    async with rollout_stack(tmp_path, contract_models, redis_url) as (inference, registry, stub, tokens):
        router = inference.router
        user = auth(tokens.issue(role="lab_user"))
        measured = {}
        for candidate in (3, 2):  # 3 = the active's weights again (agrees on every cell); 2 = other weights
            rollout_id = registry.start_rollout(candidate, shadow=True)
            await until(lambda: router.rollout is not None and router.rollout.id == rollout_id
                        and router.rollout_ready)
            versions = []
            for start in range(0, 120, 4):  # 4 at a time: the shadow slots (2) are rarely busy
                replies = await asyncio.gather(*(stub.Classify(request(i, n=4), metadata=user, timeout=20)
                                                 for i in range(start, start + 4)))
                versions += [r.model.version for r in replies]
                explained = await stub.Explain(request(start, n=2), metadata=user, timeout=20)
                versions.append(explained.model.version)
            assert set(versions) == {1}  # a shadow never answers
            await until(lambda: stats(redis_url, rollout_id)["requests"]["candidate"] > 0, timeout=5)
            await asyncio.sleep(0.5)  # the last shadow runs and the flush
            st = stats(redis_url, rollout_id)
            compared = st["agree"] + st["disagree"]
            assert compared == st["cells"]["candidate"] > 0
            assert st["requests"]["baseline"] == len(versions)
            assert st["requests"]["candidate"] + st["shadow_dropped"] + st["shadow_failed"] == len(versions)
            assert st["shadow_failed"] == 0
            measured[candidate] = (st["agree"] / compared, compared, st["shadow_dropped"])
            registry.end_rollout(promote=False)
            await until(lambda: router.rollout is None)
        print(f"shadow agreement: same weights {measured[3]}, other weights {measured[2]}")
        assert measured[3][0] == 1.0
        assert measured[2][0] < 1.0


async def test_zero_failed_requests_while_rollouts_start_promote_and_abort(tmp_path, contract_models, redis_url):
    async with rollout_stack(tmp_path, contract_models, redis_url) as (inference, registry, stub, tokens):
        router = inference.router
        user = auth(tokens.issue(role="lab_user"))
        stop = asyncio.Event()
        answered: list[int] = []
        failures: list[str] = []
        # answers to requests SENT while 2 was promoted and nothing rolled out: a request in flight
        # across the promotion, or one sent once the next canary started, may be answered by 1
        promoted: list[int] = []
        window = {"open": False}

        async def client(k: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                sent_in_window = window["open"]
                try:
                    if i % 3 == 0:
                        reply = await stub.Explain(request(k * 10000 + i), metadata=user, timeout=20)
                    else:
                        reply = await stub.Classify(request(k * 10000 + i, n=2), metadata=user, timeout=20)
                    answered.append(reply.model.version)
                    if sent_in_window:
                        promoted.append(reply.model.version)
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")

        clients = [asyncio.create_task(client(k)) for k in range(8)]
        try:
            await asyncio.sleep(1.0)
            registry.start_rollout(2, percent=30)  # canary of 2
            await until(lambda: router.rollout_ready)
            await until(lambda: answered.count(2) >= 20)
            registry.end_rollout(promote=False)  # abort under load
            await until(lambda: router.rollout is None)
            await asyncio.sleep(1.5)  # through the drain window: 2 is unpinned under load
            await until(lambda: 2 not in router.pinned)
            registry.start_rollout(2, shadow=True)  # shadow of 2, loaded again under load
            await until(lambda: router.rollout_ready)
            await asyncio.sleep(1.0)
            registry.end_rollout(promote=True)  # promote: 2 becomes the active version
            await until(lambda: router.active == 2 and router.rollout is None)
            window["open"] = True
            await asyncio.sleep(1.5)
            window["open"] = False
            registry.start_rollout(1, percent=50)  # and back: a canary of the old version
            await until(lambda: router.rollout_ready)
            await asyncio.sleep(1.0)
            registry.end_rollout(promote=True)
            await until(lambda: router.active == 1 and router.rollout is None)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        print(f"rollouts under load: {len(answered)} answered, {len(failures)} failed")
        assert not failures, failures[:5]
        assert set(promoted) == {2} and len(promoted) >= 10, promoted
        assert len(answered) > 200
        assert answered[-1] == 1
