"""The preprocess service on a real in-process server: tensors, metadata, errors, streams."""

from __future__ import annotations

import hashlib
import io

import grpc
import numpy as np
import pytest
from PIL import Image

from hemovision.common.v1 import common_pb2
from hemovision.preprocess.v1 import preprocess_pb2, preprocess_pb2_grpc
from hemovision_pixels import PreprocessSpec, decode_image, preprocess
from hemovision_preprocess.server import create_server
from hemovision_preprocess.settings import Settings

SPEC = {
    "version": 1, "input_size": 64, "crop": "center_square", "stain_normalization": None,
    "clahe": {"clip_limit": 2.0, "tiles": 8}, "blur_sigma": 0.0,
    "mean": [0.8, 0.7, 0.7], "std": [0.2, 0.25, 0.2],
}


def spec_proto() -> common_pb2.PreprocessSpec:
    return common_pb2.PreprocessSpec(
        version=1, input_size=64, crop="center_square", clahe=common_pb2.Clahe(clip_limit=2.0, tiles=8),
        mean=SPEC["mean"], std=SPEC["std"],
    )


@pytest.fixture
async def stub():
    running = await create_server(Settings(port=0, require_token=False))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield preprocess_pb2_grpc.PreprocessServiceStub(channel)
    await running.stop(0)


def tensor_array(t: common_pb2.Tensor) -> np.ndarray:
    assert t.dtype == common_pb2.DTYPE_FLOAT32
    return np.frombuffer(t.data, dtype="<f4").reshape(tuple(t.shape))


async def test_tensor_matches_the_library(stub, pbc_image_bytes):
    reply = await stub.Preprocess(
        preprocess_pb2.PreprocessRequest(image=pbc_image_bytes, spec=spec_proto(), want_thumbnail=True,
                                         want_model_image=True), timeout=10)
    expected = preprocess(decode_image(pbc_image_bytes), PreprocessSpec.from_dict(SPEC))
    got = tensor_array(reply.tensor)
    assert got.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(got[0], expected)
    assert (reply.original_width, reply.original_height) == (128, 128)
    assert reply.sha256 == hashlib.sha256(pbc_image_bytes).hexdigest()
    assert reply.format == "JPEG"
    assert Image.open(io.BytesIO(reply.thumbnail_jpeg)).format == "JPEG"
    assert Image.open(io.BytesIO(reply.model_image_png)).size == (64, 64)


async def test_v2_spec_standardises_and_reports_what_it_saw(stub, pbc_image_bytes):
    """A v2 spec over the wire (Locate, WhiteBalance) runs the same standardisation as the
    library; the response says whether a cell was found and why a person should look."""
    from hemovision_pixels import LocateSpec

    v2 = {**SPEC, "version": 2, "locate": LocateSpec().to_dict(), "white_balance": {"target": [254.0, 228.0, 203.0]}}
    proto = spec_proto()
    proto.version = 2
    proto.locate.CopyFrom(common_pb2.Locate(**LocateSpec().to_dict()))
    proto.white_balance.CopyFrom(common_pb2.WhiteBalance(target=[254.0, 228.0, 203.0]))
    reply = await stub.Preprocess(preprocess_pb2.PreprocessRequest(image=pbc_image_bytes, spec=proto,
                                                                   want_model_image=True), timeout=10)
    expected = preprocess(decode_image(pbc_image_bytes), PreprocessSpec.from_dict(v2))
    np.testing.assert_array_equal(tensor_array(reply.tensor)[0], expected)
    assert reply.cell_found and 0.5 <= reply.cell_zoom <= 2.5 and list(reply.review_reasons) == []
    stored = np.asarray(Image.open(io.BytesIO(reply.model_image_png)))
    from hemovision_pixels import model_image

    np.testing.assert_array_equal(stored, model_image(expected, PreprocessSpec.from_dict(v2)))
    blank = io.BytesIO()
    Image.new("RGB", (100, 100), (240, 228, 205)).save(blank, format="PNG")
    reply = await stub.Preprocess(preprocess_pb2.PreprocessRequest(image=blank.getvalue(), spec=proto), timeout=10)
    assert not reply.cell_found and list(reply.review_reasons) == ["cell_not_found"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"this is plain text, not a picture at all", "not_an_image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, None),  # a JPEG header and nothing else
    ],
)
async def test_bad_images_are_invalid_argument(stub, payload, reason):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Preprocess(preprocess_pb2.PreprocessRequest(image=payload, spec=spec_proto()), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    if reason:
        assert info.value.details().startswith(f"[{reason}]")


async def test_truncated_jpeg(stub, pbc_image_bytes):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Preprocess(
            preprocess_pb2.PreprocessRequest(image=pbc_image_bytes[: len(pbc_image_bytes) // 2], spec=spec_proto()),
            timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_missing_and_invalid_spec(stub, pbc_image_bytes):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Preprocess(preprocess_pb2.PreprocessRequest(image=pbc_image_bytes), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec" in info.value.details()
    bad = spec_proto()
    bad.input_size = -3
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Preprocess(preprocess_pb2.PreprocessRequest(image=pbc_image_bytes, spec=bad), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_batch_answers_each_item_in_order(stub, pbc_image_bytes):
    bad_spec = spec_proto()
    bad_spec.input_size = -3
    png = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 80, 120)).save(png, format="PNG")
    items = [
        preprocess_pb2.PreprocessRequest(image=pbc_image_bytes, spec=spec_proto(), want_model_image=True),
        preprocess_pb2.PreprocessRequest(image=b"garbage", spec=spec_proto()),
        preprocess_pb2.PreprocessRequest(image=png.getvalue(), spec=spec_proto()),
        preprocess_pb2.PreprocessRequest(image=pbc_image_bytes, spec=bad_spec),
        preprocess_pb2.PreprocessRequest(image=pbc_image_bytes[:200], spec=spec_proto()),
    ]
    reply = await stub.PreprocessBatch(preprocess_pb2.PreprocessBatchRequest(items=items), timeout=20)
    assert [r.index for r in reply.results] == [0, 1, 2, 3, 4]
    assert [r.WhichOneof("outcome") for r in reply.results] == ["result", "error", "result", "error", "error"]
    expected = preprocess(decode_image(pbc_image_bytes), PreprocessSpec.from_dict(SPEC))
    np.testing.assert_array_equal(tensor_array(reply.results[0].result.tensor)[0], expected)
    assert Image.open(io.BytesIO(reply.results[0].result.model_image_png)).size == (64, 64)
    assert (reply.results[2].result.original_width, reply.results[2].result.format) == (40, "PNG")
    assert reply.results[1].error.reason == "not_an_image"
    assert reply.results[3].error.reason == "invalid_request" and "spec" in reply.results[3].error.message
    assert reply.results[4].error.reason in ("truncated", "corrupt")


async def test_batch_bounds(stub, pbc_image_bytes):
    for n in (0, 65):
        items = [preprocess_pb2.PreprocessRequest(image=pbc_image_bytes, spec=spec_proto())] * n
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.PreprocessBatch(preprocess_pb2.PreprocessBatchRequest(items=items), timeout=20)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "items" in info.value.details()


async def test_token_required_when_verifier_given(pbc_image_bytes):
    from hemovision_testkit.tokens import TokenFactory

    factory = TokenFactory()
    running = await create_server(Settings(port=0), verifier=factory.verifier())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = preprocess_pb2_grpc.PreprocessServiceStub(channel)
            request = preprocess_pb2.PreprocessRequest(image=pbc_image_bytes, spec=spec_proto())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Preprocess(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            token = factory.issue(user_id="u1", organization_id="o1", role="lab_user", email="a@b.org")
            reply = await stub.Preprocess(request, metadata=(("authorization", f"Bearer {token}"),), timeout=10)
            assert reply.tensor.shape == [1, 64, 64, 3]
    finally:
        await running.stop(0)


def test_every_rejection_reason_is_a_contract_reason():
    """The pixel library raises only the reasons the contract lists (and the gateway maps)."""
    import re

    import hemovision_pixels.decode as decode
    from hemovision_contracts.image_formats import REJECTION_REASONS

    raised = set(re.findall(r'ImageRejected\(\s*"([a-z_]+)"', open(decode.__file__).read()))
    assert raised and raised <= set(REJECTION_REASONS), raised - set(REJECTION_REASONS)
