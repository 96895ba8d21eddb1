"""decode_image: every accepted format and mode, and every rejection reason."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from hemovision_pixels import ImageRejected, decode_image, thumbnail_jpeg

RGB = np.random.default_rng(0).integers(0, 256, (23, 31, 3), np.uint8)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_round_trip(fmt):
    out = decode_image(encode(Image.fromarray(RGB), fmt))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_webp_lossless_and_jpeg():
    np.testing.assert_array_equal(decode_image(encode(Image.fromarray(RGB), "WEBP", lossless=True)), RGB)
    out = decode_image(encode(Image.fromarray(RGB), "JPEG", quality=95))
    assert out.shape == RGB.shape


@pytest.mark.parametrize(
    ("reason", "data"),
    [
        ("empty", b""),
        ("not_an_image", b"hello, world" * 20),
        ("not_an_image", b"<html><script>alert(1)</script></html>"),
    ],
)
def test_rejections(reason, data):
    with pytest.raises(ImageRejected) as e:
        decode_image(data)
    assert e.value.reason == reason
    assert str(e.value)


def test_size_cap():
    data = encode(Image.fromarray(RGB), "PNG")
    with pytest.raises(ImageRejected) as e:
        decode_image(data, max_bytes=len(data) - 1)
    assert e.value.reason == "too_large" and e.value.http_status == 413


def test_pixel_cap():
    data = encode(Image.fromarray(RGB), "PNG")
    with pytest.raises(ImageRejected) as e:
        decode_image(data, max_pixels=23 * 31 - 1)
    assert e.value.reason == "too_many_pixels"


def test_truncated_png_and_jpeg():
    for fmt in ("PNG", "JPEG"):
        data = encode(Image.fromarray(RGB), fmt)
        with pytest.raises(ImageRejected) as e:
            decode_image(data[: len(data) // 2])
        assert e.value.reason in ("truncated", "corrupt"), fmt


def test_thumbnail():
    jpg = thumbnail_jpeg(np.zeros((300, 200, 3), np.uint8), size=96)
    with Image.open(io.BytesIO(jpg)) as im:
        assert im.format == "JPEG" and max(im.size) == 96
