"""Per-organization routing (issue 17 item 1) through the embedded model server and a fake registry:
each organization gets its adapted version, else the platform's; cold loads wait and succeed (or fall
back to the platform's); the LRU bound never evicts a version with requests in flight; an
organization's switch under concurrent requests fails none; a registry outage keeps routing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision.common.v1 import common_pb2
from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision_contracts import tensors
from hemovision_inference.server import create_server
from hemovision_inference.service import Caller
from hemovision_inference.settings import Settings
from hemovision_model_server.server import create_model_server
from hemovision_model_server.settings import ModelServerSettings
from hemovision_testkit.contract_model import publish_version
from hemovision_testkit.tokens import TokenFactory
from inference_fakes import FakeRegistry

SIZE = 32
A, B, C = "org-a", "org-b", "org-c"


def request(version: int = 0, seed: int = 0) -> inference_pb2.ClassifyRequest:
    x = np.random.default_rng(seed).normal(0, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    return inference_pb2.ClassifyRequest(
        model=common_pb2.ModelRef(name="hemovision", version=version), images=tensors.to_common_tensor(x)
    )


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


class Stack:
    def __init__(self, inference, registry, model_server, tokens: TokenFactory, base) -> None:
        self.inference, self.registry, self.model_server, self.base = inference, registry, model_server, base
        self.router = inference.router
        self.orgs = inference.router.orgs
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{inference.port}")
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.tokens = {org: tokens.issue(organization_id=org) for org in (A, B, C)}
        self.tokens[""] = tokens.issue(role="ml_engineer")

    def auth(self, org: str) -> tuple:
        return (("authorization", f"Bearer {self.tokens[org]}"),)

    def caller(self, org: str) -> Caller:
        return Caller(organization_id=org, token=self.tokens[org])

    async def classify(self, org: str, version: int = 0, timeout: float = 20.0) -> int:
        reply = await self.stub.Classify(request(version), metadata=self.auth(org), timeout=timeout)
        return reply.model.version

    async def statuses(self) -> dict[int, str]:
        return {s.version: s.state for s in await self.inference.model_server.status("hemovision")}


@contextlib.asynccontextmanager
async def org_stack(tmp_path, contract_models, organizations: dict[str, int], **overrides):
    """Platform version 1 (seed 1); versions 2 (seed 2) and 3 (seed 1 again) published once it serves."""
    base = tmp_path / "models"
    publish_version(contract_models[1], base, 1)
    model_server = await create_model_server(ModelServerSettings(
        host="127.0.0.1", port=0, rest_port=-1, model_base=str(base), poll_interval_s=0.2, drain_seconds=0.5,
        grace_seconds=0.5))
    registry = FakeRegistry(active=1, organizations=organizations)
    await registry.start()
    tokens = TokenFactory()
    values = dict(host="127.0.0.1", port=0, model_server_addr=model_server.address, model_base=str(base),
                  training_addr=registry.address, reconcile_interval_s=0.3, drain_seconds=1.0, grace_seconds=1.0,
                  predict_timeout_s=10.0, control_timeout_s=2.0, org_load_timeout_s=20.0)
    values.update(overrides)
    inference = await create_server(Settings(**values), verifier=tokens.verifier())
    stack = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{inference.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            deadline = time.monotonic() + 30
            serving = health_pb2.HealthCheckResponse.SERVING
            while (await health.Check(health_pb2.HealthCheckRequest(), timeout=3)).status != serving:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        publish_version(contract_models[2], base, 2)
        publish_version(contract_models[1], base, 3)
        stack = Stack(inference, registry, model_server, tokens, base)
        yield stack
    finally:
        if stack is not None:
            await stack.channel.close()
        await inference.stop(0.2)
        await registry.stop()
        await model_server.stop(0.2)


async def test_each_organization_gets_its_version_and_cold_load_is_shared(tmp_path, contract_models):
    async with org_stack(tmp_path, contract_models, {A: 2}) as s:
        assert s.router.pinned == {1}
        waits: list[int] = []
        original = s.router.wait_available

        async def counting(version, *args, **kwargs):
            waits.append(version)
            return await original(version, *args, **kwargs)

        s.router.wait_available = counting
        # A cold organization: its first requests (concurrent) wait for one shared load, none fails.
        assert await asyncio.gather(*(s.classify(A) for _ in range(6))) == [2] * 6
        assert waits.count(2) == 1
        assert s.router.pinned == {1, 2} and (await s.statuses())[2] == "AVAILABLE"
        info = await s.stub.GetActiveModel(inference_pb2.GetActiveModelRequest(), metadata=s.auth(A), timeout=5)
        assert info.model.version == 2
        explained = await s.stub.Explain(request(), metadata=s.auth(A), timeout=10)
        assert explained.model.version == 2 and explained.results[0].HasField("heatmap")

        # Another organization, and platform staff: the platform's version.
        assert await s.classify(B) == 1 and await s.classify("") == 1
        info = await s.stub.GetActiveModel(inference_pb2.GetActiveModelRequest(), metadata=s.auth(B), timeout=5)
        assert info.model.version == 1
        # Explicit versions: an organization may ask for the platform's and its own, never another's.
        assert await s.classify(A, version=1) == 1 and await s.classify(A, version=2) == 2
        for org in (B, ""):
            try:
                await s.classify(org, version=2)
                raise AssertionError("another organization's version answered")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION

        # The registry is asked at most once per reconcile interval per organization.
        started, calls = time.monotonic(), s.registry.org_calls[A]
        for _ in range(30):
            assert await s.classify(A) == 2
        assert s.registry.org_calls[A] - calls <= 1 + (time.monotonic() - started) / 0.3 + 1
        assert s.orgs.inflight == {}


async def test_failed_or_slow_cold_load_is_served_by_the_platform(tmp_path, contract_models, caplog):
    async with org_stack(tmp_path, contract_models, {A: 4, B: 9}) as s:
        broken = s.base / "hemovision" / ".tmp-4"
        (broken / "variables").mkdir(parents=True)
        (broken / "assets.extra").mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        (broken / "variables" / "variables.index").write_bytes(b"")
        (broken / "assets.extra" / "hemovision.json").write_text(
            (s.base / "hemovision" / "1" / "assets.extra" / "hemovision.json").read_text())
        broken.rename(s.base / "hemovision" / "4")
        caplog.set_level(logging.ERROR, logger="hemovision_inference.org_routing")
        # A's version fails to load: served by the platform's version, no failed request.
        assert await s.classify(A) == 1
        assert "organization version did not become AVAILABLE" in caplog.text
        assert 4 not in s.orgs.hot
        assert await s.classify(A) == 1  # backoff: not retried at once
        await until(lambda: s.router.pinned == {1})
        # B's version is slow to appear (its SavedModel still incomplete, so the model server does not
        # load it yet): a request with 3 s left waits ~1 s (its deadline minus the serving margin),
        # then the platform's version answers; the load goes on, on its own deadline.
        slow = s.base / "hemovision" / "9"
        (slow / "assets.extra").mkdir(parents=True)
        (slow / "assets.extra" / "hemovision.json").write_text(
            (s.base / "hemovision" / "1" / "assets.extra" / "hemovision.json").read_text())
        started = time.monotonic()
        assert await s.classify(B, timeout=3.0) == 1
        assert time.monotonic() - started > 0.8  # it waited; it was answered within its 3 s
        assert 9 in s.orgs.hot and not s.orgs.hot[9].ready
        # C's version was never published at all: no wait, the platform's version at once.
        s.registry.organizations[C] = 11
        started = time.monotonic()
        assert await s.classify(C) == 1
        assert time.monotonic() - started < 2.0 and 11 not in s.orgs.hot


async def test_lru_bound_never_evicts_a_version_with_requests_in_flight(tmp_path, contract_models):
    async with org_stack(tmp_path, contract_models, {A: 2, B: 3}, max_org_versions=1) as s:
        held = await s.router.route(0, s.caller(A))
        assert held.version == 2 and held.adapted
        # At the bound, and A's version has a request in flight: B is served by the platform's version.
        other = await s.router.route(0, s.caller(B))
        assert other.version == 1 and not other.adapted
        s.router.release(other)
        assert set(s.orgs.hot) == {2} and s.router.pinned == {1, 2}
        assert await s.classify(B) == 1
        # A's request ends: B's next request evicts A's version (least recently used, idle) and waits for its own.
        s.router.release(held)
        assert await s.classify(B) == 3
        assert set(s.orgs.hot) == {3} and s.router.pinned == {1, 3}
        # ... and A, back, gets its own again.
        assert await s.classify(A) == 2
        assert set(s.orgs.hot) == {2}

        # Idle unload: an unused version is unpinned, and unloaded by the model server after its drain.
        held = await s.router.route(0, s.caller(A))  # ... never while a request is in flight
        s.orgs.idle_s = 0.3
        await asyncio.sleep(1.0)
        assert set(s.orgs.hot) == {2}
        s.router.release(held)
        await until(lambda: s.router.pinned == {1} and not s.orgs.hot, 10)
        deadline = time.monotonic() + 10
        while (await s.statuses()).get(2) == "AVAILABLE":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert await s.classify(A) == 2  # cold again: waits for the load, does not fail


async def test_two_organizations_switch_under_concurrent_requests_with_no_failures(tmp_path, contract_models):
    async with org_stack(tmp_path, contract_models, {A: 2}) as s:
        publish_version(contract_models[2], s.base, 4)  # B's adapted version
        assert await s.classify(A) == 2
        records: dict[str, list[tuple[float, float, int]]] = {A: [], B: [], C: []}
        failures: list[str] = []
        stop = asyncio.Event()

        async def client(org: str, seed: int) -> None:
            r = request(seed=seed)
            while not stop.is_set():
                started = time.monotonic()
                try:
                    reply = await s.stub.Classify(r, metadata=s.auth(org), timeout=20)
                    records[org].append((started, time.monotonic(), reply.model.version))
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{org} {exc.code().name}: {exc.details()}")

        workers = [asyncio.create_task(client(org, i)) for i, org in enumerate([A, B, C] * 3)]
        await asyncio.sleep(1.0)
        # both organizations activate a new version at once: A 2 -> 3, B platform -> 4
        s.registry.organizations[A] = 3
        s.registry.organizations[B] = 4
        await until(lambda: s.orgs.entries[A].version == 3 and s.orgs.entries[B].version == 4)
        await asyncio.sleep(1.5)
        del s.registry.organizations[A]  # and both roll back to the platform's version
        del s.registry.organizations[B]
        await until(lambda: s.orgs.entries[A].version is None and s.orgs.entries[B].version is None)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*workers)

        answers = {org: {v: [r[2] for r in rs].count(v) for v in sorted({r[2] for r in rs})}
                   for org, rs in records.items()}
        print("\nORG-SWITCH", {"failures": len(failures), "answers_by_version": answers})
        assert not failures, failures[:5]
        assert {v for _s, _e, v in records[C]} == {1}  # an organization without an adapted version
        expected = {A: ([2, 3, None], {2, 3, 1}), B: ([4, None], {1, 4})}
        for org, (path, versions) in expected.items():
            switches = [(t, to) for t, o, _old, to in s.orgs.switches if o == org]
            assert [to for _t, to in switches] == path
            assert versions <= {v for _s, _e, v in records[org]}

            # Every answer came from a version the organization was routed to while it was under way.
            def routed_during(started: float, ended: float, switches=switches) -> set[int]:
                at_start = next((to for ts, to in reversed(switches) if ts <= started), None)
                return {v or 1 for v in [at_start, *(to for ts, to in switches if started <= ts <= ended)]}

            for started, ended, v in records[org]:
                assert v in routed_during(started, ended), (org, v, routed_during(started, ended))
        # The old versions drained, then were unpinned.
        await until(lambda: s.router.pinned == {1}, 10)


async def test_registry_outage_keeps_routing(tmp_path, contract_models, caplog):
    async with org_stack(tmp_path, contract_models, {A: 2}) as s:
        assert await s.classify(A) == 2 and await s.classify(B) == 1
        caplog.set_level(logging.WARNING, logger="hemovision_inference.org_routing")
        s.registry.down = True
        await asyncio.sleep(1.0)  # a few reconcile intervals: the platform router falls back too
        for _ in range(10):
            assert await s.classify(A) == 2
            assert await s.classify(B) == 1
            assert await s.classify(C) == 1  # never seen: the platform's version, no failure
            await asyncio.sleep(0.1)
        assert s.router.mode == "fallback" and s.router.active == 1  # never an organization's version
        assert caplog.text.count("organizations keep their last known version") == 1
        s.registry.down = False
        s.registry.organizations[A] = 3
        deadline = time.monotonic() + 20
        while await s.classify(A) != 3:  # the new version loads while the old one answers
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert s.router.mode == "registry"


async def test_pin_request_is_a_valid_tf_serving_model_config():
    """What HandleReloadConfigRequest sends (the platform's and the organizations' versions) is a
    ModelServerConfig that real tensorflow/serving reads: specific versions, the configured base path."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from hemovision_inference.model_client import ModelServerClient

    sent = []
    client = ModelServerClient("127.0.0.1:1", base_path="/models/hemovision")

    class Reply:
        class status:  # noqa: N801
            error_code = 0

    async def handle(request, timeout, wait_for_ready):
        sent.append(request)
        return Reply

    client.models = type("M", (), {"HandleReloadConfigRequest": staticmethod(handle)})()
    await client.pin("hemovision", {1, 7, 12})
    await client.close()
    text = text_format.MessageToString(sent[0].config)
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "hemovision" and model.base_path == "/models/hemovision"
    assert model.model_platform == "tensorflow"
    assert list(model.model_version_policy.specific.versions) == [1, 7, 12]


async def test_an_announced_activation_is_preloaded_before_the_first_request(tmp_path, contract_models):
    import redis.asyncio as aioredis

    from hemovision_contracts import ORGANIZATION_VERSION_CHANNEL, organization_version_event
    from hemovision_testkit.fixtures import REDIS_SERVER

    async with org_stack(tmp_path, contract_models, {A: 2}, redis_url=f"{REDIS_SERVER}/0") as s:
        client = aioredis.Redis.from_url(f"{REDIS_SERVER}/0")
        try:
            async def announced() -> bool:  # the subscriber may still be connecting: announce until heard
                await client.publish(ORGANIZATION_VERSION_CHANNEL, organization_version_event(A, 2))
                await client.publish(ORGANIZATION_VERSION_CHANNEL, b"not json")  # ignored, logged
                return 2 in s.orgs.hot

            deadline = time.monotonic() + 20
            while not await announced():
                assert time.monotonic() < deadline, "the announcement was never acted on"
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()
        await until(lambda: s.orgs.hot[2].ready)
        assert (await s.statuses())[2] == "AVAILABLE"
        # no request of A's has been served yet; its first one is answered by the warm version
        assert await s.classify(A) == 2
        assert await s.classify(B) == 1
