"""encode_png writes PNGs Pillow reads back pixel for pixel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hemovision_imaging import encode_png

rng = np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(64, 64, 3), (1, 1, 3), (7, 13, 3), (64, 64), (3, 200)])
def test_round_trip(shape):
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    img = Image.open(io.BytesIO(encode_png(a)))
    assert img.mode == ("RGB" if len(shape) == 3 else "L")
    assert np.array_equal(np.asarray(img), a)


def test_palette_and_transparency():
    palette = bytes(range(256)) * 3
    alpha = bytes(range(256))
    a = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    img = Image.open(io.BytesIO(encode_png(a, palette=palette, transparency=alpha)))
    assert img.mode == "P" and np.array_equal(np.asarray(img), a)
    assert img.info["transparency"] == alpha
    assert np.array_equal(np.asarray(img.convert("RGBA"))[..., 3], a)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((0, 4), np.uint8), np.zeros(4, np.uint8)])
def test_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError):
        encode_png(bad)
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 3), np.uint8), palette=b"\x00" * 3)


def test_cells_stay_small():
    """Real PBC cells at model input size: within 25 % of Pillow's adaptive-filter size."""
    import csv
    from pathlib import Path

    data = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pbc_128"
    rows = [r for r in csv.DictReader(open(data / "splits.csv")) if r["split"] == "test"][:20]
    ours = theirs = 0
    for r in rows:
        a = np.asarray(Image.open(data / r["path"]).convert("RGB").resize((64, 64)))
        ours += len(encode_png(a))
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", compress_level=1)
        theirs += len(buf.getvalue())
    assert ours < 1.25 * theirs, (ours, theirs)
