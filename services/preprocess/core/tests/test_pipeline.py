"""Crop/resize/normalise and the batch entry point against the NumPy reference
(numpy_reference.py) and OpenCV's resize."""

import threading

import cv2
import numpy as np
import pytest

import numpy_reference as ref
from hemovision_pixels import PreprocessSpec, ops, preprocess, preprocess_batch

RNG = np.random.default_rng(5)


def smooth_image(h, w, seed=0):
    """Random but spatially correlated (like a micrograph), so rounding ties are rare."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), np.uint8)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-12, 13, big.shape)
    return np.clip(big.astype(int) + noise, 0, 255).astype(np.uint8)


def assert_within(actual, expected, levels=1):
    assert actual.shape == expected.shape
    diff = np.abs(actual.astype(int) - expected.astype(int))
    assert diff.max() <= levels, f"max diff {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}"


@pytest.mark.parametrize(
    ("h", "w", "oh", "ow"),
    [(360, 363, 128, 128), (128, 128, 64, 64), (100, 37, 33, 11), (7, 5, 64, 64), (128, 128, 360, 360),
     (1, 1, 3, 3), (5, 300, 2, 40), (64, 64, 64, 64), (10, 3, 20, 1)],
)
def test_resize_matches_numpy_reference(h, w, oh, ow):
    img = smooth_image(h, w, seed=h * w)
    assert_within(ops.resize_area(img, oh, ow), ref.resize(img, oh, ow))


@pytest.mark.parametrize(("h", "w", "oh", "ow"), [(360, 363, 128, 128), (363, 360, 100, 97), (128, 128, 64, 64)])
def test_resize_matches_opencv_area(h, w, oh, ow):
    img = smooth_image(h, w, seed=3)
    assert_within(ops.resize_area(img, oh, ow), cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize(("h", "w", "oh", "ow"), [(128, 128, 360, 360), (50, 61, 200, 100), (3, 3, 64, 64)])
def test_resize_upscale_matches_opencv_linear(h, w, oh, ow):
    img = smooth_image(h, w, seed=4)
    assert_within(ops.resize_area(img, oh, ow), cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR))


def test_resize_single_channel():
    g = smooth_image(90, 70)[:, :, 0].copy()
    assert_within(ops.resize_area(g, 30, 20), ref.resize(g, 30, 20))


@pytest.mark.parametrize("crop", ["center_square", "pad_square", "none"])
@pytest.mark.parametrize(("h", "w"), [(360, 363), (363, 360), (50, 200), (9, 9), (1, 40)])
def test_square_resize(crop, h, w):
    img = smooth_image(h, w, seed=1)
    expected = ref.resize(np.ascontiguousarray(ref.square(img, crop)), 48, 48)
    assert_within(ops.square_resize(img, 48, crop), expected)


def test_normalize_exact():
    img = RNG.integers(0, 256, (31, 17, 3), np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    np.testing.assert_allclose(ops.normalize(img, mean, std), ref.normalize(img, mean, std), rtol=1e-6, atol=1e-6)


def test_preprocess_crop_resize_normalise_against_reference():
    d = {"version": 1, "input_size": 64, "crop": "center_square", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    img = smooth_image(360, 363)
    out = preprocess(img, PreprocessSpec.from_dict(d))
    assert out.dtype == np.float32 and out.shape == (64, 64, 3)
    # One uint8 level after normalisation is 1 / (255 * std).
    np.testing.assert_allclose(out, ref.pipeline(img, d), atol=1 / (255 * 0.25) + 1e-5)


def test_strided_view_is_read_in_place():
    big = smooth_image(400, 500)
    view = big[20:380, 30:393]
    assert not view.flags.c_contiguous
    spec = PreprocessSpec.from_dict({"version": 1, "input_size": 32})
    np.testing.assert_array_equal(preprocess(view, spec), preprocess(np.ascontiguousarray(view), spec))
    # A channel-reversed view is not packed RGB: it is copied, and still correct.
    bgr = big[:, :, ::-1]
    np.testing.assert_array_equal(preprocess(bgr, spec), preprocess(np.ascontiguousarray(bgr), spec))


@pytest.mark.parametrize("threads", [0, 1, 2, 5])
def test_batch_equals_single(threads):
    spec = PreprocessSpec.from_dict(
        {"version": 1, "input_size": 40, "clahe": {"clip_limit": 2.0, "tiles": 4}, "blur_sigma": 0.7,
         "stain_normalization": {"method": "grey_world"}}
    )
    images = [smooth_image(30 + 7 * i, 50 + 3 * i, seed=i) for i in range(9)]
    batch = preprocess_batch(images, spec, threads=threads)
    assert batch.shape == (9, 40, 40, 3) and batch.dtype == np.float32
    for i, im in enumerate(images):
        np.testing.assert_array_equal(batch[i], preprocess(im, spec))


def test_batch_empty_and_errors():
    spec = PreprocessSpec.from_dict({"version": 1, "input_size": 8})
    assert preprocess_batch([], spec).shape == (0, 8, 8, 3)
    with pytest.raises(TypeError, match="uint8"):
        preprocess_batch([np.zeros((4, 4, 3), np.float32)], spec)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        preprocess_batch([np.zeros((4, 4), np.uint8)], spec)
    with pytest.raises(ValueError, match="empty"):
        preprocess(np.zeros((0, 4, 3), np.uint8), spec)
    with pytest.raises(ValueError, match="threads"):
        preprocess_batch([np.zeros((4, 4, 3), np.uint8)], spec, threads=-1)


def test_batch_releases_the_gil():
    """While a large batch runs on one C++ thread, a Python thread keeps running."""
    spec = PreprocessSpec.from_dict({"version": 1, "input_size": 128, "clahe": {"clip_limit": 2.0, "tiles": 8}})
    images = [smooth_image(360, 360, seed=i) for i in range(4)] * 60
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    preprocess_batch(images, spec, threads=1)
    done.set()
    t.join()
    assert ticks > 1000


def test_concurrent_python_threads_agree():
    """Per-thread scratch buffers: many threads calling in at once get the same answers."""
    from concurrent.futures import ThreadPoolExecutor

    spec = PreprocessSpec.from_dict(
        {"version": 1, "input_size": 48, "clahe": {"clip_limit": 2.0, "tiles": 8}, "blur_sigma": 0.8,
         "stain_normalization": {"method": "reinhard", "target_mean": [70, 5, -5], "target_std": [10, 5, 5]}}
    )
    images = [smooth_image(60 + i, 90 - i, seed=i) for i in range(16)]
    expected = [preprocess(im, spec) for im in images]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda im: preprocess(im, spec), images * 4))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g, expected[i % 16])
