"""The stored heatmap rendering: a palette PNG whose index is the heat."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hemovision_inference.heatmaps import _colormap, heatmap_png


def blob(size: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    return np.exp(-((x - 0.8) ** 2 + (y - 0.2) ** 2) / 0.05).astype(np.float32)


def test_colours_alpha_and_heat_round_trip():
    heat = blob()
    img = Image.open(io.BytesIO(heatmap_png(heat)))
    assert img.format == "PNG" and img.mode == "P" and img.size == (16, 16)
    index = np.asarray(img)
    assert np.abs(index / 255.0 - heat).max() <= 0.5 / 255 + 1e-6  # the heat, quantised
    rgba = np.asarray(img.convert("RGBA")).astype(int)
    expected = _colormap(index / 255.0).astype(int)
    assert np.abs(rgba[..., :3] - expected).max() <= 1
    hot, cold = np.unravel_index(heat.argmax(), heat.shape), np.unravel_index(heat.argmin(), heat.shape)
    assert rgba[hot][3] == 255 and rgba[cold][3] < 70  # opaque where hot, see-through where cold
    assert rgba[hot][0] > rgba[hot][2]  # red where hot


@pytest.mark.parametrize("shape", [(1, 8, 8), (8, 8, 1)])
def test_resized_and_batched_shapes(shape):
    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(shape)
    img = Image.open(io.BytesIO(heatmap_png(heat, size=32)))
    assert img.size == (32, 32)
    assert np.asarray(img)[0, 0] < 20 and np.asarray(img)[-1, -1] > 235


def test_out_of_range_and_bad_shapes():
    img = Image.open(io.BytesIO(heatmap_png(np.array([[0.0, 2.0], [np.nan, -1.0]], np.float32))))
    assert np.asarray(img).tolist() == [[85, 255], [85, 0]]  # min-max rescaled; NaN -> 0
    with pytest.raises(ValueError):
        heatmap_png(np.zeros((2, 2, 2, 2), np.float32))
