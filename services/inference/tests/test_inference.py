"""InferenceService end to end through a real model server (in-process, or a real child process)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hemovision.common.v1 import common_pb2
from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision_contracts import tensors
from hemovision_inference.server import create_server
from hemovision_inference.settings import Settings
from hemovision_model_server.server import create_model_server
from hemovision_model_server.settings import ModelServerSettings
from hemovision_testkit.contract_model import CLASS_NAMES, publish_version
from hemovision_testkit.model_server import ModelServerProcess
from hemovision_contracts.topology import LIVENESS_HEALTH_SERVICE
from inference_fakes import FakeRegistry

SIZE = 32
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, SIZE, SIZE, 3)).astype(np.float32)


def classify_request(x: np.ndarray, version: int = 0) -> inference_pb2.ClassifyRequest:
    return inference_pb2.ClassifyRequest(
        model=common_pb2.ModelRef(name="hemovision", version=version), images=tensors.to_common_tensor(x)
    )


def inference_settings(model_base, model_server_addr, **overrides) -> Settings:
    values = dict(
        host="127.0.0.1", port=0, model_server_addr=model_server_addr, model_base=str(model_base),
        reconcile_interval_s=0.3, drain_seconds=1.0, grace_seconds=1.0, predict_timeout_s=10.0,
        control_timeout_s=2.0, require_auth=True,
    )
    values.update(overrides)
    return Settings(**values)


def model_server_settings(model_base, **overrides) -> ModelServerSettings:
    values = dict(host="127.0.0.1", port=0, rest_port=-1, model_base=str(model_base), poll_interval_s=0.2,
                  drain_seconds=0.5, grace_seconds=0.5)
    values.update(overrides)
    return ModelServerSettings(**values)


async def health(address: str, service: str = "hemovision.inference.v1.InferenceService") -> int:
    async with grpc.aio.insecure_channel(address) as ch:
        return (await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=3)).status


async def wait_health(address: str, want: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await health(address) == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never became {want}")


@pytest.fixture
async def stack(model_base, tokens):
    model_server = await create_model_server(model_server_settings(model_base))
    registry = FakeRegistry(active=1)
    await registry.start()
    inference = await create_server(
        inference_settings(model_base, model_server.address, training_addr=registry.address), verifier=tokens.verifier()
    )
    address = f"127.0.0.1:{inference.port}"
    await wait_health(address, SERVING)
    channel = grpc.aio.insecure_channel(address)
    yield {"inference": inference, "model_server": model_server, "registry": registry, "address": address,
           "stub": inference_pb2_grpc.InferenceServiceStub(channel)}
    await channel.close()
    await inference.stop(0.2)
    await registry.stop()
    await model_server.stop(0.2)


async def test_classify_explain_and_active_model(stack, auth):
    stub = stack["stub"]
    info = await stub.GetActiveModel(inference_pb2.GetActiveModelRequest(), metadata=auth, timeout=5)
    assert info.model.version == 1 and list(info.class_names) == CLASS_NAMES and info.input_size == SIZE
    assert info.preprocessing.crop == "center_square" and info.preprocessing.clahe.tiles == 8
    assert list(info.preprocessing.mean) == [0.5, 0.5, 0.5] and info.review_threshold == pytest.approx(0.5)

    reply = await stub.Classify(classify_request(images(3)), metadata=auth, timeout=10)
    assert reply.model.name == "hemovision" and reply.model.version == 1 and reply.model_ms > 0
    assert len(reply.results) == 3
    for r in reply.results:
        assert set(r.probabilities) == set(CLASS_NAMES)
        assert r.label in CLASS_NAMES and r.confidence == pytest.approx(max(r.probabilities.values()), rel=1e-5)
        assert sum(r.probabilities.values()) == pytest.approx(1.0, rel=1e-4)
        assert r.needs_review == bool(r.review_reasons)
        assert not r.HasField("heatmap")

    explained = await stub.Explain(classify_request(images(2), version=1), metadata=auth, timeout=10)
    assert explained.model.version == 1
    classified = await stub.Classify(classify_request(images(2), version=1), metadata=auth, timeout=10)
    for e, c in zip(explained.results, classified.results, strict=True):
        assert e.ood_score == pytest.approx(c.ood_score, abs=1e-4)  # recomputed from explain's logits
        assert e.needs_review == c.needs_review
    heat = tensors.from_common_tensor(explained.results[0].heatmap)
    assert heat.shape == (SIZE, SIZE) and 0.0 <= heat.min() and heat.max() <= 1.0 + 1e-6
    assert explained.results[0].label == (await stub.Classify(classify_request(images(2)), metadata=auth, timeout=10)).results[0].label

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(classify_request(images(1), version=9), metadata=auth, timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(classify_request(np.zeros((1, 8, 8, 3), np.float32)), metadata=auth, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(classify_request(images(65)), metadata=auth, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Classify(classify_request(images(1)), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_review_flags(model_base, contract_models, tokens, auth):
    """Low confidence and OOD both flag, with the thresholds of the version that classified."""
    meta_path = model_base / "hemovision" / "1" / "assets.extra" / "hemovision.json"
    meta = json.loads(meta_path.read_text())
    meta.update(review_threshold=0.99, ood_threshold=-1e9)
    meta_path.write_text(json.dumps(meta))
    model_server = await create_model_server(model_server_settings(model_base))
    inference = await create_server(
        inference_settings(model_base, model_server.address), verifier=tokens.verifier(), registry=False
    )
    try:
        address = f"127.0.0.1:{inference.port}"
        await wait_health(address, SERVING)
        async with grpc.aio.insecure_channel(address) as ch:
            reply = await inference_pb2_grpc.InferenceServiceStub(ch).Classify(
                classify_request(images(4)), metadata=auth, timeout=10
            )
        for r in reply.results:
            assert r.needs_review
            assert list(r.review_reasons) == [
                inference_pb2.REVIEW_REASON_LOW_CONFIDENCE, inference_pb2.REVIEW_REASON_OUT_OF_DISTRIBUTION
            ]
    finally:
        await inference.stop(0.2)
        await model_server.stop(0.2)


async def test_health_follows_model_and_shutdown(tmp_path, contract_models, tokens):
    base = tmp_path / "empty"
    (base / "hemovision").mkdir(parents=True)
    model_server = await create_model_server(model_server_settings(base))
    inference = await create_server(
        inference_settings(base, model_server.address), verifier=tokens.verifier(), registry=False
    )
    address = f"127.0.0.1:{inference.port}"
    try:
        await asyncio.sleep(1.0)
        assert await health(address) == NOT_SERVING
        assert await health(address, "") == NOT_SERVING
        # no model is "not ready", not "dead": the liveness probe's name stays SERVING
        assert await health(address, LIVENESS_HEALTH_SERVICE) == SERVING
        publish_version(contract_models[1], base, 1)
        await wait_health(address, SERVING)
        assert await health(address, "") == SERVING
        # graceful shutdown: a Watch opened before sees NOT_SERVING before the server goes away
        async with grpc.aio.insecure_channel(address) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service="hemovision.inference.v1.InferenceService")
            )
            seen = [(await watch.read()).status]
            stopping = asyncio.create_task(inference.running.stop(2.0))
            seen.append((await asyncio.wait_for(watch.read(), 5)).status)
            assert seen == [SERVING, NOT_SERVING]
            await stopping
    finally:
        await inference.close()
        await model_server.stop(0.2)


async def test_model_server_down_fast_unavailable_then_recovers(model_base, tokens, auth):
    process = ModelServerProcess(model_base)
    process.start()
    inference = None
    try:
        await process.wait_ready()
        inference = await create_server(
            inference_settings(model_base, process.address), verifier=tokens.verifier(), registry=False
        )
        address = f"127.0.0.1:{inference.port}"
        await wait_health(address, SERVING)
        async with grpc.aio.insecure_channel(address) as ch:
            stub = inference_pb2_grpc.InferenceServiceStub(ch)
            assert (await stub.Classify(classify_request(images(1)), metadata=auth, timeout=10)).model.version == 1
            process.kill()  # a real SIGKILL
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Classify(classify_request(images(1)), metadata=auth, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 2.0
            await wait_health(address, NOT_SERVING, timeout=10)
            process.start()  # same port
            await wait_health(address, SERVING, timeout=120)
            deadline = time.monotonic() + 30
            while True:
                try:
                    reply = await stub.Classify(classify_request(images(1)), metadata=auth, timeout=10)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            assert reply.model.version == 1
    finally:
        if inference is not None:
            await inference.stop(0.2)
        process.stop()


async def test_review_flag_fires_on_non_cell_images(tmp_path, serving_model, tokens, auth):
    """With the shipped model: noise, a photo and a blank slide are flagged for review, through
    the same C++ preprocessing as serving; every flag matches the version's own thresholds."""
    import hemovision_pixels as px
    from skimage import data

    meta = json.loads((serving_model / "assets.extra" / "hemovision.json").read_text())
    spec = px.PreprocessSpec.from_dict(meta["preprocessing"])
    rng = np.random.default_rng(0)
    non_cells = [
        rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
        np.clip(rng.normal(128, 50, (128, 128, 3)), 0, 255).astype(np.uint8),
        np.ascontiguousarray(data.astronaut()),
        np.ascontiguousarray(data.coffee()),
        np.full((128, 128, 3), 255, np.uint8),
        np.zeros((128, 128, 3), np.uint8),
    ]
    x = np.stack([px.preprocess(img, spec) for img in non_cells]).astype(np.float32)
    base = tmp_path / "models"
    publish_version(serving_model, base, 1)
    model_server = await create_model_server(model_server_settings(base))
    inference = await create_server(inference_settings(base, model_server.address), verifier=tokens.verifier(), registry=False)
    try:
        address = f"127.0.0.1:{inference.port}"
        await wait_health(address, SERVING, timeout=120)
        address = f"127.0.0.1:{inference.port}"
        async with grpc.aio.insecure_channel(address) as ch:
            reply = await inference_pb2_grpc.InferenceServiceStub(ch).Classify(
                inference_pb2.ClassifyRequest(images=tensors.to_common_tensor(x)), metadata=auth, timeout=30
            )
        for r in reply.results:
            assert r.needs_review
            assert inference_pb2.REVIEW_REASON_OUT_OF_DISTRIBUTION in r.review_reasons
            low = r.confidence < meta["review_threshold"]
            assert (inference_pb2.REVIEW_REASON_LOW_CONFIDENCE in r.review_reasons) == low
        # ... while real PBC test cells of every class pass the plausibility check
        import csv

        data = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pbc_128"
        rows = [r for r in csv.DictReader(open(data / "splits.csv")) if r["split"] == "test"]
        picked = {}
        for r in rows:
            picked.setdefault(r["label"], r["path"])
        cells = np.stack([px.preprocess(px.decode_image((data / p).read_bytes()), spec) for p in picked.values()])
        async with grpc.aio.insecure_channel(address) as ch:
            reply = await inference_pb2_grpc.InferenceServiceStub(ch).Classify(
                inference_pb2.ClassifyRequest(images=tensors.to_common_tensor(cells.astype(np.float32))),
                metadata=auth, timeout=30,
            )
        ood_flags = [inference_pb2.REVIEW_REASON_OUT_OF_DISTRIBUTION in r.review_reasons for r in reply.results]
        assert sum(ood_flags) <= 1, ood_flags
    finally:
        await inference.stop(0.2)
        await model_server.stop(0.2)


async def test_registry_points_at_unpublished_version_keeps_serving(stack, auth):
    stack["inference"].router.missing_timeout_s = 1.0
    stack["registry"].active = 7  # registered but never published under the model base
    await asyncio.sleep(2.5)
    reply = await stack["stub"].Classify(classify_request(images(1)), metadata=auth, timeout=10)
    assert reply.model.version == 1
    assert await health(stack["address"]) == SERVING
    stack["registry"].active = 1
