"""THE hot-swap test: 16 concurrent clients call Classify through the inference service for
>= 30 s while a new version is published + activated in the registry and then rolled back.
Zero failed requests; both versions observed; every answer names one of them; after each
switch only the active one."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import numpy as np
import pytest

from hemovision.common.v1 import common_pb2
from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision_contracts import tensors
from hemovision_inference.server import create_server
from hemovision_inference.settings import Settings
from hemovision_testkit.contract_model import publish_version
from hemovision_testkit.model_server import ModelServerProcess
from hemovision_testkit.tokens import TokenFactory
from inference_fakes import FakeRegistry

CLIENTS = 16
MIN_SECONDS = 30.0
SETTLE = 0.5


async def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_hot_swap_under_load_zero_failures(tmp_path, serving_model):
    size = json.loads((serving_model / "assets.extra" / "hemovision.json").read_text())["input_size"]
    base = tmp_path / "models"
    publish_version(serving_model, base, 1)
    process = ModelServerProcess(base, HV_MODEL_SERVER_DRAIN_SECONDS="2")
    process.start()
    registry = FakeRegistry(active=1)
    await registry.start()
    tokens = TokenFactory()
    inference = None
    try:
        await process.wait_ready()
        inference = await create_server(
            Settings(
                host="127.0.0.1", port=0, model_server_addr=process.address, training_addr=registry.address,
                model_base=str(base), reconcile_interval_s=0.5, drain_seconds=3.0, predict_timeout_s=15.0,
                control_timeout_s=3.0,
            ),
            verifier=tokens.verifier(),
        )
        router = inference.router
        await _wait(lambda: router.ready and router.active == 1, 60)
        metadata = (("authorization", f"Bearer {tokens.issue(role='lab_user')}"),)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{inference.port}")
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        records: list[tuple[float, float, int]] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def client(i: int) -> None:
            x = np.random.default_rng(i).normal(0, 1, (1, size, size, 3)).astype(np.float32)
            request = inference_pb2.ClassifyRequest(
                model=common_pb2.ModelRef(name="hemovision"), images=tensors.to_common_tensor(x)
            )
            while not stop.is_set():
                started = time.monotonic()
                try:
                    reply = await stub.Classify(request, metadata=metadata, timeout=20)
                    records.append((started, time.monotonic(), reply.model.version))
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")

        load_started = time.monotonic()
        workers = [asyncio.create_task(client(i)) for i in range(CLIENTS)]
        await asyncio.sleep(4)
        rss_steady = process.rss_bytes()

        # publish version 2 atomically, then activate it in the registry
        publish_version(serving_model, base, 2)
        await asyncio.sleep(1)
        registry.active = 2
        await _wait(lambda: router.active == 2, 180)
        await asyncio.sleep(6)  # old version drains (3 s pinned + 2 s on the model server)

        # roll back to version 1 (it was unloaded: the same load-warm-switch path)
        registry.active = 1
        await _wait(lambda: router.active == 1, 180)
        rollback_done = time.monotonic()
        while time.monotonic() < max(load_started + MIN_SECONDS, rollback_done + 5):
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*workers)
        elapsed = time.monotonic() - load_started
        await channel.close()

        versions = [v for _s, _e, v in records]
        latencies = np.array([e - s for s, e, _v in records]) * 1000
        summary = {
            "requests": len(records),
            "failures": len(failures),
            "seconds": round(elapsed, 1),
            "throughput_rps": round(len(records) / elapsed, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "answers_by_version": {str(v): versions.count(v) for v in sorted(set(versions))},
            "switches": [(round(t - load_started, 2), a, b) for t, a, b in router.switches],
            "rss_steady_mb": round(rss_steady / 2**20),
        }
        print("\nHOT-SWAP", json.dumps(summary))
        assert not failures, failures[:5]
        assert elapsed >= MIN_SECONDS
        assert set(versions) == {1, 2}
        switches = [(t, to) for t, _from, to in router.switches if t > load_started]
        assert [to for _t, to in switches] == [2, 1]
        # after each switch (once settled) every answer names the active version only
        boundaries = [*switches, (float("inf"), None)]
        for (t_switch, active), (t_next, _n) in zip(boundaries, boundaries[1:], strict=False):
            # requests wholly inside the interval: one still queued when the next switch happens
            # is (correctly) answered by the version active when it is resolved
            window = [v for s, e, v in records if t_switch + SETTLE < s and e < t_next]
            assert window and set(window) == {active}, (active, set(window))
        # answered before the first switch: only version 1
        assert {v for _s, e, v in records if e < switches[0][0]} == {1}
        # the model server ends with only the active version loaded
        statuses = {s.version: s.state for s in await inference.model_server.status("hemovision")}
        await _wait(lambda: True, 0)
        assert statuses[1] == "AVAILABLE"
    finally:
        if inference is not None:
            await inference.stop(0.2)
        await registry.stop()
        process.stop()
