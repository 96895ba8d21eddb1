"""decode_image: every accepted format and mode, and every rejection reason."""

import io

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
    assert e.value.reason == "too_large"


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


# --- every mode and format -----------------------------------------------------

import numpy_reference  # noqa: E402,F401  (keeps conftest path setup honest)
from hemovision_testkit.dicom import colour_dicom  # noqa: E402
from image_files import MODES_FORMATS, dicom, mode_image, png16_rgb, raw_png  # noqa: E402


@pytest.mark.parametrize(("mode", "fmt"), [(m, f) for m, fs in MODES_FORMATS.items() for f in fs])
def test_every_mode_becomes_rgb(mode, fmt):
    im = mode_image(mode, 9, 14)
    out = decode_image(encode(im, fmt))
    assert out.shape == (9, 14, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_grey_is_replicated():
    g = np.arange(60, dtype=np.uint8).reshape(6, 10)
    out = decode_image(encode(Image.fromarray(g), "PNG"))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


def test_png16_grey_and_rgb_scaled_to_8_bit():
    g16 = np.array([[0, 65535, 257 * 128, 300]], np.uint16)
    out = decode_image(encode(Image.fromarray(g16), "PNG"))
    assert out[0, :, 0].tolist() == [0, 255, 128, 1]
    rgb16 = np.zeros((2, 3, 3), np.uint16)
    rgb16[0, 0] = (65535, 0, 257 * 100)
    out = decode_image(png16_rgb(rgb16))
    assert out.shape == (2, 3, 3) and out[0, 0].tolist() == [255, 0, 100]


def test_palette_with_transparency_composited_on_white():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    p.putpixel((1, 1), 1)
    out = decode_image(encode(p, "PNG", transparency=0))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [200, 10, 10]


def test_exif_orientation_is_applied():
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (20, 10, 3)
    assert out[:10].mean() > 200 and out[10:].mean() < 50  # white half now on top


# --- DICOM -----------------------------------------------------------------------


def test_dicom_rgb_and_monochrome():
    rgb = RGB[:8, :12].copy()
    np.testing.assert_array_equal(decode_image(dicom(rgb, "RGB")), rgb)
    g = np.arange(96, dtype=np.uint8).reshape(8, 12)
    out = decode_image(dicom(g, "MONOCHROME2"))
    np.testing.assert_array_equal(out[:, :, 1], g)
    out1 = decode_image(dicom(g, "MONOCHROME1"))
    np.testing.assert_array_equal(out1[:, :, 0], 255 - g)
    g12 = (np.arange(96, dtype=np.uint16) * 40).reshape(8, 12)
    out12 = decode_image(dicom(g12, "MONOCHROME2", bits=12))
    assert out12[0, 0, 0] == 0 and out12.max() == round(95 * 40 * 255 / 4095)


@pytest.mark.parametrize("jpeg", [False, True], ids=["ybr_full", "jpeg_baseline"])
def test_dicom_colour_comes_back_as_the_cell_it_was(jpeg):
    """YCbCr DICOM (JPEG-compressed, as microscopes write them, or uncompressed) decodes to the
    RGB it was made from: converted to RGB once (pydicom does it), never twice."""
    y, x = np.mgrid[0:32, 0:32]
    cell = np.stack([200 - 3 * x, 120 + 2 * y, 180 + (x + y) // 2], axis=-1).astype(np.uint8)  # smooth, stain-like
    out = decode_image(colour_dicom(cell, encoding="jpeg" if jpeg else "ybr_full"))
    assert out.shape == cell.shape
    assert np.abs(out.astype(int) - cell).mean() < (3.0 if jpeg else 1.0)


def test_dicom_multi_frame_refused_naming_the_count():
    stack = np.zeros((3, 4, 5), np.uint8)
    with pytest.raises(ImageRejected, match="3 frames") as e:
        decode_image(dicom(stack, "MONOCHROME2", frames=3))
    assert e.value.reason == "multi_frame"


def test_dicom_polyglot_preamble():
    g = np.zeros((4, 4), np.uint8)
    with pytest.raises(ImageRejected) as e:
        decode_image(dicom(g, "MONOCHROME2", preamble=b"MZ" + b"\x90" * 126))
    assert e.value.reason == "polyglot"


# --- hostile inputs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "warnings_as", ["ignore::PIL.Image.DecompressionBombWarning", "error::PIL.Image.DecompressionBombWarning"]
)
def test_png_declaring_a_huge_size_is_refused_before_decoding(warnings_as, recwarn):
    import warnings

    warnings.filterwarnings(*warnings_as.split("::")[:1], category=Image.DecompressionBombWarning)
    with pytest.raises(ImageRejected) as e:
        decode_image(raw_png(100_000, 100_000, 8, 2))
    assert e.value.reason == "too_many_pixels" and "10,000,000,000 pixels" in str(e.value)
    # Just above Pillow's own warning threshold, under its error threshold.
    with pytest.raises(ImageRejected) as e:
        decode_image(raw_png(7000, 7000, 8, 0))
    assert e.value.reason == "too_many_pixels"


def test_png_declared_size_larger_than_its_data_is_truncated():
    with pytest.raises(ImageRejected) as e:
        decode_image(raw_png(500, 500, 8, 2))
    assert e.value.reason in ("truncated", "corrupt")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_polyglot_trailing_payload(fmt):
    data = encode(Image.fromarray(RGB), fmt) + b"PK\x03\x04" + b"\x00" * 100 + b"<script>alert(1)</script>"
    with pytest.raises(ImageRejected) as e:
        decode_image(data)
    assert e.value.reason == "polyglot"


def test_unsupported_formats_and_multi_frame():
    with pytest.raises(ImageRejected) as e:
        decode_image(encode(Image.fromarray(RGB), "GIF"))
    assert e.value.reason == "unsupported_type" and "GIF" in str(e.value)
    pages = [Image.fromarray(RGB), Image.fromarray(RGB[::-1].copy())]
    tiff = io.BytesIO()
    pages[0].save(tiff, format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageRejected) as e:
        decode_image(tiff.getvalue())
    assert e.value.reason == "multi_frame" and "2 frames" in str(e.value)


def test_content_not_name_decides():
    # A PNG is a PNG whatever it is called; there is no name to lie with.
    assert decode_image(encode(Image.fromarray(RGB), "PNG")).shape == RGB.shape
    with pytest.raises(TypeError):
        decode_image("image.png")  # type: ignore[arg-type]


def test_rejections_survive_pickling():
    """The reason travels with the exception (worker processes); HTTP is the gateway's business."""
    import pickle

    e = pickle.loads(pickle.dumps(ImageRejected("truncated", "msg")))
    assert e.reason == "truncated" and str(e) == "msg"


def test_png_polyglot_that_ends_with_a_fake_iend():
    from image_files import png_chunk

    data = encode(Image.fromarray(RGB), "PNG") + b"<?php system($_GET[1]); ?>" + png_chunk(b"IEND", b"")
    with pytest.raises(ImageRejected) as e:
        decode_image(data)
    assert e.value.reason == "polyglot"
