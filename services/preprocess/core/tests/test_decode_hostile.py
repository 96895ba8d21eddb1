"""decode_image against hostile files (hemovision_testkit.hostile) and hypothesis mutations of them:
only ImageRejected with a documented reason ever leaves the decoder, within a bounded time, and a
decoded image is always HxWx3 uint8. The REST answers for the same files: tests/e2e/test_hostile_inputs.py."""

from __future__ import annotations

import os
import struct
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemovision_contracts.image_formats import REJECTION_REASONS
from hemovision_pixels import ImageRejected, decode_image
from hemovision_testkit.hostile import _cell, dicom_file, encode, image_corpus, raw_png

CASES = image_corpus()
# A fixed budget for CI; raise it locally with HV_FUZZ_EXAMPLES=5000.
EXAMPLES = int(os.environ.get("HV_FUZZ_EXAMPLES", "200"))
PER_CALL_S = 5.0  # the slowest legitimate decode of these small files takes milliseconds


def decode_checked(data: bytes) -> None:
    start = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow/pydicom warn on corrupt metadata; only the outcome counts
            out = decode_image(data)
    except ImageRejected as exc:
        assert exc.reason in REJECTION_REASONS, exc.reason
        assert str(exc) and exc.message
        return
    finally:
        assert time.monotonic() - start < PER_CALL_S
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.size > 0 and out.flags.c_contiguous


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_corpus(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.expect == "accepted":
            out = decode_image(case.data)
            assert out.ndim == 3 and out.shape[2] == 3
            return
        with pytest.raises(ImageRejected) as e:
            decode_image(case.data)
    assert e.value.reason in case.codes, (case.why, e.value.reason, e.value.message)
    assert e.value.reason in REJECTION_REASONS


def test_exif_rotation_is_applied_and_nonsense_is_ignored():
    by_name = {c.name: c for c in CASES}
    assert decode_image(by_name["exif_orientation_6"].data).shape == (32, 48, 3)  # 48x32 stood upright
    for value in (0, 9, 255, 65535):
        assert decode_image(by_name[f"exif_orientation_{value}"].data).shape == (48, 32, 3)


SEEDS = [c.data for c in CASES if len(c.data) < 70_000] + [
    encode(_cell(20, 30), fmt) for fmt in ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
] + [dicom_file(rows=8, cols=8), dicom_file(rows=8, cols=8, samples=1, photometric="MONOCHROME2")]

# Offsets of the fields a hostile file lies in: PNG IHDR size/depth/type, JPEG SOF, BMP size, TIFF IFD.
FIELD_OFFSETS = (16, 20, 24, 25, 18, 22, 4, 8, 12)


@settings(max_examples=EXAMPLES, deadline=int(PER_CALL_S * 1000), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    base=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
    fields=st.lists(st.tuples(st.sampled_from(FIELD_OFFSETS), st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF,
                                                                               0xFFFFFFFF])), max_size=3),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    splice=st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.binary(max_size=64))),
    tail=st.sampled_from([b"", b"PK\x03\x04", b"<html>", b"\xff\xd9", b"IEND"]),
)
def test_mutated_hostile_files_only_raise_documented_rejections(base, edits, fields, cut, splice, tail):
    data = bytearray(base)
    for pos, value in fields:
        if pos + 4 <= len(data):
            struct.pack_into(">I", data, pos, value)
    for pos, value in edits:
        data[pos % len(data)] = value
    if splice is not None:
        at = splice[0] % (len(data) + 1)
        data[at:at] = splice[1]
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    decode_checked(bytes(data) + tail)


@settings(max_examples=EXAMPLES // 2, deadline=int(PER_CALL_S * 1000), database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(0, 2**31 - 1), height=st.integers(0, 2**31 - 1), depth=st.sampled_from([1, 2, 4, 8, 16, 3]),
       colour=st.sampled_from([0, 2, 3, 4, 6, 1, 7]), rows=st.binary(max_size=256))
def test_any_png_header_only_raises_documented_rejections(width, height, depth, colour, rows):
    """A hand-written PNG may declare any size, depth and colour type over any (short) data."""
    import zlib

    decode_checked(raw_png(width, height, depth, colour, zlib.compress(rows)))


@settings(max_examples=EXAMPLES // 3, deadline=int(PER_CALL_S * 1000), database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(0, 65_535), cols=st.integers(0, 65_535), samples=st.sampled_from([1, 3, 4]),
       frames=st.integers(-2, 3), pixels=st.binary(max_size=512),
       syntax=st.sampled_from(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
                               "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.3.4"]),
       photometric=st.sampled_from(["RGB", "MONOCHROME1", "MONOCHROME2", "YBR_FULL", "PALETTE COLOR", "XYZ"]))
def test_any_dicom_header_only_raises_documented_rejections(rows, cols, samples, frames, pixels, syntax, photometric):
    decode_checked(dicom_file(rows=rows, cols=cols, samples=samples, frames=frames, pixel_data=pixels,
                              transfer_syntax=syntax, photometric=photometric))
