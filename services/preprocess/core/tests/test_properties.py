"""Property tests (hypothesis): any shape, any spec, any mode, any bytes -> a valid
result or a clear error; never a crash or a hang. Example counts are kept small so
the file runs in well under a minute on 2 cores, and the same file is what the
ASan/UBSan build runs (scripts/sanitize.sh)."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numpy_reference as ref
from hemovision_pixels import ImageRejected, PreprocessSpec, decode_image, ops, preprocess, preprocess_batch
from image_files import MODES_FORMATS, encode, mode_image

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# 1x1 up to very wide or very tall, with the extremes drawn often.
sides = st.one_of(st.integers(1, 8), st.integers(1, 400), st.sampled_from([1, 2, 3, 2000, 3000]))


@st.composite
def images(draw, max_pixels=600_000):
    h, w = draw(sides), draw(sides)
    if h * w > max_pixels:
        h = max(1, max_pixels // w)
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


triples = st.tuples(*[st.floats(-2, 2, allow_nan=False)] * 3)
pos_triples = st.tuples(*[st.floats(0.01, 5, allow_nan=False)] * 3)


@st.composite
def specs(draw):
    stain = draw(st.sampled_from([None, "grey_world", "reinhard"]))
    return {
        "version": 1,
        "input_size": draw(st.one_of(st.integers(1, 16), st.sampled_from([64, 128, 224]))),
        "crop": draw(st.sampled_from(["center_square", "pad_square", "none"])),
        "stain_normalization": None if stain is None else {"method": "grey_world"} if stain == "grey_world" else {
            "method": "reinhard",
            "target_mean": [draw(st.floats(0, 100)), draw(st.floats(-50, 50)), draw(st.floats(-50, 50))],
            "target_std": [draw(st.floats(0.1, 40)) for _ in range(3)],
        },
        "clahe": draw(st.one_of(st.none(), st.fixed_dictionaries(
            {"clip_limit": st.floats(0, 50), "tiles": st.integers(1, 16)}))),
        "blur_sigma": draw(st.one_of(st.just(0.0), st.floats(0, 5))),
        "mean": list(draw(triples)),
        "std": list(draw(pos_triples)),
    }


@FAST
@given(img=images(), spec=specs())
def test_preprocess_any_shape_any_spec(img, spec):
    s = PreprocessSpec.from_dict(spec)
    out = preprocess(img, s)
    n = spec["input_size"]
    assert out.shape == (n, n, 3) and out.dtype == np.float32
    assert np.isfinite(out).all()
    # Every output pixel is one of the 256 normalised levels of its channel.
    lo = (0 - np.array(spec["mean"])) / np.array(spec["std"]) - 1e-3
    hi = (1 - np.array(spec["mean"])) / np.array(spec["std"]) + 1e-3
    assert (out >= lo.astype(np.float32)).all() and (out <= hi.astype(np.float32)).all()


@settings(max_examples=25, deadline=None)
@given(img=images(max_pixels=60_000), size=st.integers(1, 96), crop=st.sampled_from(["center_square", "pad_square", "none"]))
def test_square_resize_matches_reference_on_any_shape(img, size, crop):
    expected = ref.resize(np.ascontiguousarray(ref.square(img, crop)), size, size)
    got = ops.square_resize(img, size, crop)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@settings(max_examples=25, deadline=None)
@given(img=images(max_pixels=20_000), clip=st.floats(0, 20), tiles=st.integers(1, 10))
def test_clahe_l_matches_reference_on_any_shape(img, clip, tiles):
    got = ops.clahe_l(img, clip, tiles)
    expected = ref.clahe_l(img, clip, tiles)
    # Random noise is CLAHE's worst case (every tile histogram is flat), hence the
    # looser bound here than on smooth images in test_ops.py.
    assert np.mean(np.abs(got.astype(int) - expected.astype(int)) > 2) <= 0.01


@settings(max_examples=10, deadline=None)
@given(batch=st.lists(images(max_pixels=40_000), min_size=0, max_size=6), spec=specs(), threads=st.integers(0, 4))
def test_batch_equals_single(batch, spec, threads):
    s = PreprocessSpec.from_dict(spec)
    out = preprocess_batch(batch, s, threads=threads)
    assert out.shape == (len(batch), s.input_size, s.input_size, 3)
    for i, im in enumerate(batch):
        np.testing.assert_array_equal(out[i], preprocess(im, s))


MODE_FORMAT = [(m, f) for m, fs in MODES_FORMATS.items() for f in fs]


@FAST
@given(mf=st.sampled_from(MODE_FORMAT), h=st.integers(1, 70), w=st.integers(1, 70), seed=st.integers(0, 100))
def test_decode_every_mode(mf, h, w, seed):
    mode, fmt = mf
    if fmt == "WEBP" and (h > 16383 or w > 16383):
        return
    out = decode_image(encode(mode_image(mode, h, w, seed), fmt))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def check_decode(data: bytes) -> None:
    try:
        out = decode_image(data, max_pixels=4_000_000)
    except ImageRejected as e:
        assert e.reason and str(e)
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.size > 0


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=4096))
def test_random_bytes_never_crash(data):
    check_decode(data)


VALID = [encode(mode_image(m, 17, 23, 1), f) for m, f in MODE_FORMAT]


@settings(max_examples=150, deadline=None)
@given(
    base=st.sampled_from(VALID),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"RIFF"]),
)
def test_mutated_images_never_crash(base, edits, cut, prefix):
    """Valid files with flipped bytes, cut short or given another format's magic."""
    data = bytearray(base)
    for pos, val in edits:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    check_decode(prefix + bytes(data))


def test_thumbnail_is_small_jpeg():
    from PIL import Image

    from hemovision_pixels import thumbnail_jpeg

    for shape in [(1, 1, 3), (360, 363, 3), (5, 900, 3)]:
        jpg = thumbnail_jpeg(np.zeros(shape, np.uint8))
        with Image.open(io.BytesIO(jpg)) as im:
            assert im.format == "JPEG" and max(im.size) <= 96


@pytest.mark.parametrize("size", [1, 4096])
def test_extreme_input_sizes(size):
    s = PreprocessSpec.from_dict({"version": 1, "input_size": size, "clahe": {"clip_limit": 2.0, "tiles": 8}, "blur_sigma": 1.0})
    img = np.random.default_rng(0).integers(0, 256, (3, 5, 3), np.uint8)
    assert preprocess(img, s).shape == (size, size, 3)


@st.composite
def v2_specs(draw):
    d = draw(specs())
    lo = draw(st.floats(0.05, 4.0))
    d.update(
        version=2,
        locate=draw(st.one_of(st.none(), st.fixed_dictionaries({
            "work_size": st.integers(8, 256), "white_percentile": st.floats(0.01, 1.0),
            "min_od": st.floats(0.0, 2.5), "dilate": st.integers(0, 4), "min_area": st.floats(0.0, 0.2),
            "target_fraction": st.floats(0.05, 2.0), "min_zoom": st.just(lo),
            "max_zoom": st.floats(lo, 8.0)}))),
        white_balance=draw(st.one_of(st.none(), st.fixed_dictionaries(
            {"target": st.lists(st.floats(1, 255), min_size=3, max_size=3)}))),
    )
    return d


@FAST
@given(img=images(), spec=v2_specs())
def test_standardised_pipeline_any_shape_any_spec(img, spec):
    from hemovision_pixels import preprocess_with_info, review_reasons

    s = PreprocessSpec.from_dict(spec)
    out, info = preprocess_with_info(img, s)
    assert out.shape == (s.input_size, s.input_size, 3) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.array_equal(out, preprocess(img, s))
    if info.cell_found:
        h, w = img.shape[:2]
        assert 0 <= info.cx <= w and 0 <= info.cy <= h and 0 < info.size <= max(h, w) + 1
        assert info.zoom > 0
    assert set(review_reasons(info, s)) <= {"cell_not_found", "cell_size_unusual"}
