"""The embedded model server through the official tensorflow_serving stubs and TF Serving's REST JSON."""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from hemovision_model_server.server import create_model_server
from hemovision_model_server.settings import ModelServerSettings
from hemovision_tensor_proto import from_tensor_proto, to_tensor_proto
from hemovision_testkit.contract_model import INPUT_SIZE as SIZE
from hemovision_testkit.contract_model import publish_version as publish

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def settings_for(model_base, **overrides) -> ModelServerSettings:
    values = dict(
        host="127.0.0.1", port=0, rest_port=0, model_base=str(model_base), poll_interval_s=0.2,
        drain_seconds=0.5, load_retry_initial_s=0.3, grace_seconds=0.5,
    )
    values.update(overrides)
    return ModelServerSettings(**values)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, SIZE, SIZE, 3)).astype(np.float32)


def predict_request(x: np.ndarray, version: int | None = None, signature: str = "", label: str = ""):
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="hemovision", signature_name=signature))
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    request.inputs["image"].CopyFrom(to_tensor_proto(x))
    return request


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def server(model_base):
    running = await create_model_server(settings_for(model_base))
    yield running
    await running.stop(0.5)


@pytest.fixture
async def channel(server):
    async with grpc.aio.insecure_channel(server.address) as ch:
        yield ch


async def statuses(channel, version=None):
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="hemovision"))
    if version is not None:
        request.model_spec.version.value = version
    reply = await model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=5)
    return {s.version: s for s in reply.model_version_status}


async def test_predict_both_signatures_and_metadata(server, channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    x = images(3)
    reply = await stub.Predict(predict_request(x), timeout=10)
    assert reply.model_spec.version.value == 1
    probs = from_tensor_proto(reply.outputs["probabilities"])
    assert probs.shape == (3, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert from_tensor_proto(reply.outputs["ood_score"]).shape == (3,)

    reply = await stub.Predict(predict_request(x, version=1, signature="explain"), timeout=10)
    heatmap = from_tensor_proto(reply.outputs["heatmap"])
    assert heatmap.shape == (3, SIZE, SIZE) and heatmap.min() >= 0 and heatmap.max() <= 1.0 + 1e-6

    meta = await stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name="hemovision"), metadata_field=["signature_def"]
        ),
        timeout=5,
    )
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(sig_map)
    assert {"serving_default", "explain"} <= set(sig_map.signature_def)
    assert "image" in sig_map.signature_def["serving_default"].inputs

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Predict(predict_request(x, version=7), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Predict(predict_request(np.zeros((1, 5, 5, 3), np.float32)), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_rest_row_and_columnar(server):
    x = images(2, seed=3)
    base = f"http://127.0.0.1:{server.rest_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        row = await http.post("/v1/models/hemovision:predict", json={"instances": x.tolist()})
        assert row.status_code == 200, row.text
        predictions = row.json()["predictions"]
        assert len(predictions) == 2 and set(predictions[0]) == {"probabilities", "logits", "ood_score"}

        row_named = await http.post(
            "/v1/models/hemovision/versions/1:predict",
            json={"signature_name": "explain", "instances": [{"image": x[0].tolist()}]},
        )
        assert row_named.status_code == 200, row_named.text
        assert np.asarray(row_named.json()["predictions"][0]["heatmap"]).shape == (SIZE, SIZE)

        col = await http.post("/v1/models/hemovision:predict", json={"inputs": {"image": x.tolist()}})
        assert col.status_code == 200, col.text
        outputs = col.json()["outputs"]
        np.testing.assert_allclose(
            outputs["probabilities"], [p["probabilities"] for p in predictions], rtol=1e-5, atol=1e-6
        )

        status = await http.get("/v1/models/hemovision")
        assert status.json()["model_version_status"][0] == {
            "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
        }
        one = await http.get("/v1/models/hemovision/versions/1")
        assert one.status_code == 200 and one.json()["model_version_status"][0]["version"] == "1"
        assert (await http.get("/v1/models/hemovision/versions/9")).status_code == 404
        meta = await http.get("/v1/models/hemovision/versions/1/metadata")
        assert "serving_default" in meta.json()["metadata"]["signature_def"]["signatureDef"]

        missing = await http.post("/v1/models/nope:predict", json={"instances": x.tolist()})
        assert missing.status_code == 404 and "error" in missing.json()
        bad = await http.post("/v1/models/hemovision:predict", json={"instances": [[1, 2]]})
        assert bad.status_code == 400

        metrics = (await http.get("/monitoring/prometheus/metrics")).text
        assert 'hv_model_server_requests_total{api="rest",code="OK",model="hemovision",signature="serving_default",version="1"}' in metrics
        assert "hv_model_server_batch_size_bucket" in metrics
        assert 'hv_model_server_loaded_versions{model="hemovision"} 1.0' in metrics
        assert 'event="load"' in metrics


async def test_half_written_version_is_never_loaded(server, channel, model_base, contract_models):
    target = model_base / "hemovision" / "2"
    # 1) variables missing, 2) a .tmp marker, 3) a dot directory: none may load.
    target.mkdir()
    shutil.copy(contract_models[2] / "saved_model.pb", target / "saved_model.pb")
    hidden = model_base / "hemovision" / ".3"
    shutil.copytree(contract_models[2], hidden)
    await asyncio.sleep(1.0)
    assert set(await statuses(channel)) == {1}
    shutil.copytree(contract_models[2] / "variables", target / "variables")
    (target / "upload.tmp").write_text("")
    await asyncio.sleep(1.0)
    assert set(await statuses(channel)) == {1}
    for item in contract_models[2].iterdir():
        if not (target / item.name).exists():
            (shutil.copytree if item.is_dir() else shutil.copy)(item, target / item.name)
    os.remove(target / "upload.tmp")

    async def v2_available():
        return (await statuses(channel)).get(2) is not None and (await statuses(channel))[2].state == AVAILABLE

    await wait_for(v2_available)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    reply = await stub.Predict(predict_request(images(1)), timeout=10)
    assert reply.model_spec.version.value == 2
    # version 1 drains (explicit calls still work), then unloads
    await wait_for(lambda: _state_is(channel, 1, END), timeout=10)


async def _state_is(channel, version, state):
    s = (await statuses(channel)).get(version)
    return s is not None and s.state == state


async def test_broken_version_keeps_old_serving_and_is_reported(server, channel, model_base, contract_models):
    broken = model_base / "hemovision" / ".tmp-2"
    shutil.copytree(contract_models[2], broken)
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    os.rename(broken, model_base / "hemovision" / "2")

    async def v2_failed():
        s = (await statuses(channel)).get(2)
        return s is not None and s.state == END and s.status.error_code != 0

    await wait_for(v2_failed)
    s = (await statuses(channel, 2))[2]
    assert "failed to load" in s.status.error_message
    assert server.metrics.model_events.labels("hemovision", "2", "load_failed")._value.get() >= 1
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    reply = await stub.Predict(predict_request(images(1)), timeout=10)
    assert reply.model_spec.version.value == 1
    assert (await statuses(channel))[1].state == AVAILABLE
    # retried with backoff: a fixed directory loads without a restart
    shutil.rmtree(model_base / "hemovision" / "2")
    publish(contract_models[2], model_base, 2)
    await wait_for(lambda: _state_is(channel, 2, AVAILABLE), timeout=30)


async def test_memory_headroom_refuses_clearly(server, channel, model_base, contract_models):
    server.manager.memory_factor = 1e9  # "needs" a petabyte
    publish(contract_models[2], model_base, 2)

    async def refused():
        s = (await statuses(channel)).get(2)
        return s is not None and s.status.error_code == 8

    await wait_for(refused)
    s = (await statuses(channel))[2]
    assert "not enough memory" in s.status.error_message and s.state == END
    assert (await statuses(channel))[1].state == AVAILABLE


def _config(policy: str, versions=(), labels=None) -> model_management_pb2.ReloadConfigRequest:
    config = model_server_config_pb2.ModelServerConfig()
    mc = config.model_config_list.config.add(name="hemovision", model_platform="tensorflow")
    if policy == "specific":
        mc.model_version_policy.specific.versions.extend(versions)
    elif policy == "all":
        mc.model_version_policy.all.SetInParent()
    else:
        mc.model_version_policy.latest.num_versions = 1
    for k, v in (labels or {}).items():
        mc.version_labels[k] = v
    return model_management_pb2.ReloadConfigRequest(config=config)


async def test_version_policy_and_labels(server, channel, model_base, contract_models):
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    # pin version 1 before version 2 appears: 2 is never loaded
    reply = await models.HandleReloadConfigRequest(_config("specific", [1]), timeout=10)
    assert reply.status.error_code == 0
    publish(contract_models[2], model_base, 2)
    await asyncio.sleep(1.0)
    assert set(await statuses(channel)) == {1}
    # all versions, labels stable=1 canary=2
    await models.HandleReloadConfigRequest(_config("all", labels={"stable": 1, "canary": 2}), timeout=10)
    await wait_for(lambda: _state_is(channel, 2, AVAILABLE))
    assert (await statuses(channel))[1].state == AVAILABLE
    x = images(1)
    assert (await stub.Predict(predict_request(x, label="stable"), timeout=5)).model_spec.version.value == 1
    assert (await stub.Predict(predict_request(x, label="canary"), timeout=5)).model_spec.version.value == 2
    assert (await stub.Predict(predict_request(x), timeout=5)).model_spec.version.value == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Predict(predict_request(x, label="nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.rest_port}", timeout=10) as http:
        r = await http.post("/v1/models/hemovision/labels/stable:predict", json={"instances": x.tolist()})
        assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"
    # specific {2}: version 1 drains and unloads
    await models.HandleReloadConfigRequest(_config("specific", [2]), timeout=10)
    await wait_for(lambda: _state_is(channel, 1, END), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await models.HandleReloadConfigRequest(_config("specific", []), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_concurrent_requests_are_batched_and_queue_sheds(model_base):
    running = await create_model_server(
        settings_for(
            model_base, max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1, max_enqueued_batches=2,
            dispatch_when_idle=False,  # TF Serving semantics: wait up to the timeout for the batch to fill
        )
    )
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            x = images(1)
            replies = await asyncio.gather(*[stub.Predict(predict_request(x), timeout=10) for _ in range(8)])
            assert all(r.model_spec.version.value == 1 for r in replies)
            hist = running.metrics.batch_size.labels("hemovision", "1", "serving_default")
            sizes = {s.labels["le"]: s.value for s in hist.collect()[0].samples if s.name.endswith("_bucket")}
            # fewer batches than requests, at least one with >= 4 rows (batches counted cumulatively by bucket)
            total_batches = sizes["+Inf"]
            assert total_batches < 8 and total_batches - sizes["2.0"] >= 1, sizes

            # The only batch thread is busy (we hold its slot): 16 rows fit in the queue
            # (2 batches x 8); the rest of a burst of 40 must shed at once, not wait.
            await running.batcher._slots.acquire()
            calls = [asyncio.ensure_future(stub.Predict(predict_request(x), timeout=20)) for _ in range(40)]
            done, _pending = await asyncio.wait(calls, timeout=5)
            assert len(done) == 40 - 16
            running.batcher._slots.release()
            results = await asyncio.gather(*calls, return_exceptions=True)
            codes = [r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)]
            assert codes and set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert sum(1 for r in results if not isinstance(r, Exception)) >= 16
    finally:
        await running.stop(0.5)


async def test_warm_up_runs_before_a_version_is_available(server, channel, model_base, contract_models, monkeypatch):
    """A new version's warm-up (its tf_serving_warmup_requests records, here written like TF
    Serving's own) runs while it is LOADING: it is AVAILABLE, and routed to, only afterwards."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from hemovision_model_server import loader

    target = model_base / "hemovision" / "2"
    shutil.copytree(contract_models[2], model_base / "hemovision" / ".staging")
    warm = model_base / "hemovision" / ".staging" / "assets.extra"
    warm.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(warm / "tf_serving_warmup_requests")) as writer:
        for sig in ("serving_default", "explain"):
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(images(2), signature=sig)))
            writer.write(log.SerializeToString())
    seen: list[tuple[str, int]] = []  # (signature, batch) of every warm-up run, in order
    states_during: list[int] = []
    original_run = loader.LoadedVersion.run

    def recording_run(self, signature, inputs):
        if self.version == 2:
            seen.append((signature, int(next(iter(inputs.values())).shape[0])))
            time.sleep(0.3)  # long enough for a status poll to see the state mid warm-up
        return original_run(self, signature, inputs)

    monkeypatch.setattr(loader.LoadedVersion, "run", recording_run)
    (model_base / "hemovision" / ".staging").rename(target)

    async def poll_during_warm_up():
        s = (await statuses(channel)).get(2)
        if seen and len(seen) < 2 and s is not None:
            states_during.append(s.state)
        return s is not None and s.state == AVAILABLE

    await wait_for(poll_during_warm_up, interval=0.05)
    assert seen[:2] == [("serving_default", 2), ("explain", 2)]  # the records, as written
    assert states_during and AVAILABLE not in states_during
    reply = await prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request(images(1)), timeout=10)
    assert reply.model_spec.version.value == 2
