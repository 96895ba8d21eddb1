"""AnalyzeImages, the short route: real preprocess service + real model server, and the retry and
fallback rules on fakes behind the analyzer's own interfaces."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from PIL import Image

from hemovision.inference.v1 import inference_pb2, inference_pb2_grpc
from hemovision.preprocess.v1 import preprocess_pb2
from hemovision_contracts.tensors import to_common_tensor
from hemovision_inference.analysis import ImageAnalyzer, Rejected
from hemovision_inference.errors import ModelServerUnavailable, SignatureMissing, VersionNotLoaded
from hemovision_inference.preprocess_client import Prepared
from hemovision_inference.router import Route
from hemovision_inference.server import create_server
from hemovision_inference.service import CellResult, ClassifyResult
from hemovision_model_server.server import create_model_server
from hemovision_preprocess.server import create_server as create_preprocess_server
from hemovision_preprocess.settings import Settings as PreprocessSettings
from hemovision_testkit.contract_model import CLASS_NAMES
from inference_fakes import FakeRegistry
from test_inference import SERVING, SIZE, inference_settings, model_server_settings, wait_health

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pbc_128"


def pbc_cells(n: int) -> list[bytes]:
    rows = [r for r in csv.DictReader(open(DATA / "splits.csv")) if r["split"] == "test"]
    return [(DATA / r["path"]).read_bytes() for r in rows[:n]]


@pytest.fixture
async def short_route(model_base, tokens):
    model_server = await create_model_server(model_server_settings(model_base))
    registry = FakeRegistry(active=1)
    await registry.start()
    preprocess = await create_preprocess_server(PreprocessSettings(host="127.0.0.1", port=0), verifier=tokens.verifier())
    inference = await create_server(
        inference_settings(model_base, model_server.address, training_addr=registry.address,
                           preprocess_addr=f"127.0.0.1:{preprocess.port}"),
        verifier=tokens.verifier())
    address = f"127.0.0.1:{inference.port}"
    await wait_health(address, SERVING)
    channel = grpc.aio.insecure_channel(address)
    yield SimpleNamespace(stub=inference_pb2_grpc.InferenceServiceStub(channel), preprocess=preprocess)
    await channel.close()
    await inference.stop(0.2)
    await preprocess.stop(0.2)
    await registry.stop()
    await model_server.stop(0.2)


async def test_images_in_answers_and_heatmap_pngs_out(short_route, auth):
    stub = short_route.stub
    cells = pbc_cells(3)
    truncated = cells[0][:200]
    request = inference_pb2.AnalyzeImagesRequest(images=[cells[0], truncated, cells[1], cells[2]],
                                                 want_heatmap=True, want_model_image=True)
    reply = await stub.AnalyzeImages(request, metadata=auth, timeout=20)
    assert reply.model.model.version == 1 and list(reply.model.class_names) == CLASS_NAMES
    assert reply.model_ms > 0 and reply.preprocess_ms > 0
    assert [r.WhichOneof("outcome") for r in reply.results] == ["result", "error", "result", "result"]
    assert reply.results[1].error.reason in ("truncated", "corrupt") and reply.results[1].error.message
    for data, outcome in zip([cells[0], cells[1], cells[2]], [reply.results[i] for i in (0, 2, 3)], strict=True):
        r = outcome.result
        c = r.classification
        assert c.label in CLASS_NAMES and set(c.probabilities) == set(CLASS_NAMES)
        assert not c.HasField("heatmap")  # the PNG travels instead of the float tensor
        heat = Image.open(io.BytesIO(r.heatmap_png))
        assert heat.size == (SIZE, SIZE) and heat.mode == "P"
        assert Image.open(io.BytesIO(r.model_image_png)).size == (SIZE, SIZE)
        assert r.sha256 == hashlib.sha256(data).hexdigest()
        assert r.needs_review == bool(r.review_reasons)
        model_reasons = {"low_confidence", "out_of_distribution"}
        assert {x for x in r.review_reasons if x in model_reasons} == {
            {inference_pb2.REVIEW_REASON_LOW_CONFIDENCE: "low_confidence",
             inference_pb2.REVIEW_REASON_OUT_OF_DISTRIBUTION: "out_of_distribution"}[x] for x in c.review_reasons}

    # the same answer as preprocessing by hand and asking Explain
    pre = short_route.preprocess
    async with grpc.aio.insecure_channel(f"127.0.0.1:{pre.port}") as ch:
        from hemovision.preprocess.v1 import preprocess_pb2_grpc

        prepared = await preprocess_pb2_grpc.PreprocessServiceStub(ch).Preprocess(
            preprocess_pb2.PreprocessRequest(image=cells[0], spec=reply.model.preprocessing), metadata=auth, timeout=10)
    explained = await stub.Explain(inference_pb2.ClassifyRequest(images=prepared.tensor), metadata=auth, timeout=10)
    assert explained.results[0].label == reply.results[0].result.classification.label
    assert explained.results[0].confidence == pytest.approx(reply.results[0].result.classification.confidence, abs=1e-5)

    only_bad = await stub.AnalyzeImages(inference_pb2.AnalyzeImagesRequest(images=[b"not an image"]),
                                        metadata=auth, timeout=10)
    assert only_bad.results[0].error.reason == "not_an_image" and only_bad.model.model.version == 1
    plain = await stub.AnalyzeImages(inference_pb2.AnalyzeImagesRequest(images=[cells[0]]), metadata=auth, timeout=10)
    assert plain.results[0].result.heatmap_png == b"" and plain.results[0].result.model_image_png == b""


async def test_answers_are_counted_by_class_version_and_organization(short_route, tokens):
    """hemovision_predictions_total / _flagged_total: one per answered cell (a rejected image is
    not a prediction), labelled with the answering version and the caller's organization id."""
    from prometheus_client import REGISTRY

    org = "org-metrics-test"
    md = (("authorization", f"Bearer {tokens.issue(role='lab_user', organization_id=org)}"),)

    def counted() -> tuple[float, float]:
        total = sum(s.value for m in REGISTRY.collect() if m.name == "hemovision_predictions"
                    for s in m.samples if s.name.endswith("_total") and s.labels.get("organization") == org)
        flagged = REGISTRY.get_sample_value("hemovision_predictions_flagged_total",
                                            {"model_version": "1", "organization": org}) or 0.0
        return total, flagged

    before = counted()
    cells = pbc_cells(2)
    reply = await short_route.stub.AnalyzeImages(
        inference_pb2.AnalyzeImagesRequest(images=[cells[0], b"not an image", cells[1]]), metadata=md, timeout=20)
    after = counted()
    flagged = sum(r.result.needs_review for r in reply.results if r.WhichOneof("outcome") == "result")
    assert after[0] - before[0] == 2 and after[1] - before[1] == flagged
    labels = {r.result.classification.label for r in reply.results if r.WhichOneof("outcome") == "result"}
    for label in labels:
        assert REGISTRY.get_sample_value("hemovision_predictions_total",
                                         {"label": label, "model_version": "1", "organization": org}) >= 1


async def test_bad_calls_get_clear_statuses(short_route, auth):
    stub = short_route.stub
    for request, code in [
        (inference_pb2.AnalyzeImagesRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (inference_pb2.AnalyzeImagesRequest(images=[b"x"] * 65), grpc.StatusCode.INVALID_ARGUMENT),
        (inference_pb2.AnalyzeImagesRequest(images=[b"x"], model_name="other"), grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AnalyzeImages(request, metadata=auth, timeout=10)
        assert err.value.code() == code and err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AnalyzeImages(inference_pb2.AnalyzeImagesRequest(images=pbc_cells(1)), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_preprocess_down_is_a_fast_unavailable(short_route, auth):
    await short_route.preprocess.stop(0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await short_route.stub.AnalyzeImages(inference_pb2.AnalyzeImagesRequest(images=pbc_cells(1)),
                                             metadata=auth, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "preprocess" in err.value.details()


# ---- the rules, on fakes behind the analyzer's interfaces --------------------------------------

def _meta(version: int, crop: str = "center_square"):
    return SimpleNamespace(name="hemovision", version=version, input_size=4, class_names=["a", "b"],
                           preprocessing={"version": 1, "input_size": 4, "crop": crop}, temperature=1.0,
                           review_threshold=0.5, ood_threshold=1.0, organization_id="")


class FakeRouter:
    def __init__(self, versions: list[int], crops: dict[int, str]) -> None:
        self.versions, self.crops = versions, crops
        self.held: list[int] = []

    async def route(self, requested, caller, wait_s=None, *, any_spec=False):
        v = self.versions.pop(0)
        self.held.append(v)
        return Route(v, adapted=False)

    def release(self, route):
        self.held.remove(route.version)

    def metadata(self, version):
        return _meta(version, self.crops[version])

    def compatible(self, a, b):
        return self.crops[a] == self.crops[b]


class FakeService:
    def __init__(self, router, failures: list[Exception]) -> None:
        self.router, self.failures, self.calls = router, failures, []

    def check_name(self, name):
        return name or "hemovision"

    @staticmethod
    def load_wait_s(deadline_s):
        return deadline_s

    async def serve(self, route, name, images, explain):
        self.calls.append((route.version, len(images), explain))
        if self.failures:
            raise self.failures.pop(0)
        heat = np.ones((4, 4), np.float32) if explain else None
        cell = CellResult("a", 0.9, {"a": 0.9, "b": 0.1}, False, [], 0.0, heat)
        return ClassifyResult(name, route.version, [cell] * len(images), 1.0)


class FakePreprocess:
    def __init__(self) -> None:
        self.specs = []

    async def prepare(self, images, spec, *, want_model_image, token, deadline_s):
        self.specs.append(spec.crop)
        return [preprocess_pb2.PreprocessError(reason="truncated", message="cut") if data == b"bad" else
                Prepared(np.zeros((4, 4, 3), np.float32), b"png", "sha", ("cell_not_found",), 1.0, 1.0)
                for data in images]


def _analyzer(versions, crops, failures):
    router = FakeRouter(versions, crops)
    service = FakeService(router, failures)
    preprocess = FakePreprocess()
    return ImageAnalyzer(service, preprocess), router, service, preprocess


async def _analyze(analyzer, images=(b"ok", b"bad", b"ok")):
    return await analyzer.analyze(list(images), want_heatmap=True, want_model_image=True, caller=None, deadline_s=5)


async def test_a_version_swapped_out_is_retried_once_on_the_new_one():
    same = {1: "center_square", 2: "center_square"}
    analyzer, router, service, preprocess = _analyzer([1, 2], same, [VersionNotLoaded("gone")])
    analysis = await _analyze(analyzer)
    assert analysis.meta.version == 2 and [c[0] for c in service.calls] == [1, 2]
    assert len(preprocess.specs) == 1  # the same pixel pipeline: the tensors are reused
    assert isinstance(analysis.outcomes[1], Rejected) and analysis.outcomes[1].reason == "truncated"
    assert analysis.outcomes[0].review_reasons == ["cell_not_found"] and analysis.outcomes[0].needs_review
    assert analysis.outcomes[0].heatmap_png.startswith(b"\x89PNG")
    assert router.held == []  # every route released

    other = {1: "center_square", 2: "none"}
    analyzer, router, service, preprocess = _analyzer([1, 2], other, [VersionNotLoaded("gone")])
    await _analyze(analyzer)
    assert preprocess.specs == ["center_square", "none"]  # prepared again for the new pipeline

    # Still missing after the re-route (the model server restarted and is loading it): the caller
    # named no version, so it is retryable UNAVAILABLE (503), not FAILED_PRECONDITION (409).
    analyzer, router, service, _ = _analyzer([1, 2], same, [VersionNotLoaded("gone"), VersionNotLoaded("again")])
    with pytest.raises(ModelServerUnavailable) as caught:
        await _analyze(analyzer)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and "starting or reloading" in caught.value.message
    assert router.held == []


async def test_a_model_without_explain_answers_without_a_heatmap():
    analyzer, _, service, _ = _analyzer([1], {1: "center_square"}, [SignatureMissing("no explain")])
    analysis = await _analyze(analyzer, [b"ok"])
    assert [c[2] for c in service.calls] == [True, False]
    assert analysis.outcomes[0].heatmap_png == b""


async def test_all_rejected_never_calls_the_model():
    analyzer, router, service, _ = _analyzer([1], {1: "center_square"}, [])
    analysis = await _analyze(analyzer, [b"bad"])
    assert service.calls == [] and isinstance(analysis.outcomes[0], Rejected) and router.held == []


def test_tensor_codec_round_trip():
    from hemovision_contracts.tensors import TensorError, from_common_tensor

    x = np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3)
    assert np.array_equal(from_common_tensor(to_common_tensor(x)), x)
    u = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert from_common_tensor(to_common_tensor(u)).dtype == np.uint8
    broken = to_common_tensor(x)
    broken.data = broken.data[:-4]
    with pytest.raises(TensorError):
        from_common_tensor(broken)
