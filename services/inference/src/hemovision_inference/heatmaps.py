"""Grad-CAM heatmaps rendered as PNGs, next to where the heatmap is computed (the short route):
the answer carries a ~5 KB PNG instead of a float32 [S, S] tensor for someone else to render."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hemovision_imaging import encode_png


def _colormap(values: np.ndarray) -> np.ndarray:
    """A 'jet'-like colour map: [0,1] floats -> uint8 RGB, without matplotlib."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255.0 + 0.5).astype(np.uint8)


# The rendered heatmap is a palette PNG: pixel value = heat quantised to 0..255, the palette the
# colour map, the tRNS table the alpha (55..255, growing with the heat). It looks the same as an
# RGBA rendering, encodes faster and smaller (docs/serving.md, Benchmarks), and keeps the heat
# readable (the index).
_PALETTE = _colormap(np.linspace(0.0, 1.0, 256, dtype=np.float32)).tobytes()
_ALPHA = bytes(int(v) for v in np.linspace(0.0, 1.0, 256) * 200 + 55)


def heatmap_png(heatmap: np.ndarray, size: int | None = None) -> bytes:
    """Renders a Grad-CAM heatmap [h, w] in [0,1] as a palette PNG with alpha (see above),
    resized to `size` x `size` when given, so the UI can lay it over the cell image."""
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim == 3:
        hm = hm[0] if hm.shape[0] == 1 else hm[..., 0]
    if hm.ndim != 2 or hm.size == 0:
        raise ValueError(f"heatmap must be 2-D, got shape {hm.shape}")
    hm = np.nan_to_num(hm, nan=0.0, posinf=1.0, neginf=0.0)
    lo, hi = float(hm.min()), float(hm.max())
    if hi > 1.0 or lo < 0.0:
        hm = (hm - lo) / (hi - lo) if hi > lo else np.zeros_like(hm)
    index = np.ascontiguousarray(np.clip(hm, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if size and index.shape != (size, size):  # resize the heat, then colour it
        index = np.asarray(Image.fromarray(index, "L").resize((size, size), Image.Resampling.BILINEAR))
    return encode_png(index, palette=_PALETTE, transparency=_ALPHA)
