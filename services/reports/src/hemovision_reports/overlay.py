"""The Grad-CAM overlay: the heatmap colour-mapped (jet) and alpha-blended over the cell image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Anchor points of the "jet" colour map (value -> RGB), interpolated linearly.
_JET = np.array(
    [
        [0.00, 0.0, 0.0, 0.5],
        [0.11, 0.0, 0.0, 1.0],
        [0.36, 0.0, 1.0, 1.0],
        [0.62, 1.0, 1.0, 0.0],
        [0.87, 1.0, 0.0, 0.0],
        [1.00, 0.5, 0.0, 0.0],
    ]
)


def jet(values: np.ndarray) -> np.ndarray:
    """float array in [0, 1] -> uint8 RGB array of the same shape + (3,)."""
    v = np.clip(values, 0.0, 1.0)
    rgb = np.stack([np.interp(v, _JET[:, 0], _JET[:, c]) for c in (1, 2, 3)], axis=-1)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def heat_intensity(heatmap: Image.Image) -> Image.Image:
    """The heat behind a stored heatmap PNG, as an L image. History stores the colour-mapped
    rendering inference makes: a palette PNG whose index is the heat, or (stored earlier, when the
    gateway rendered it) RGBA whose alpha grows with it.
    Their luminance is not the heat (the colour map's red is darker than its yellow)."""
    if heatmap.mode == "P":
        return Image.frombytes("L", heatmap.size, heatmap.tobytes())
    if heatmap.mode in ("RGBA", "LA"):
        return heatmap.getchannel("A")
    return heatmap.convert("L")


def heatmap_overlay(image_png: bytes, heatmap_png: bytes, *, alpha: float = 0.45) -> bytes:
    """PNG of the cell image with the heatmap blended on top.

    The heatmap (read as intensity, see heat_intensity) is resized to the image, min-max
    normalised, colour-mapped, and blended with a per-pixel alpha that grows with
    the heat, so cold regions leave the cell visible."""
    image = Image.open(io.BytesIO(image_png)).convert("RGB")
    heat = heat_intensity(Image.open(io.BytesIO(heatmap_png))).resize(image.size, Image.Resampling.BILINEAR)
    h = np.asarray(heat, dtype=np.float32)
    span = float(h.max() - h.min())
    h = (h - h.min()) / span if span > 0 else np.zeros_like(h)
    colour = jet(h).astype(np.float32)
    base = np.asarray(image, dtype=np.float32)
    a = (alpha * (0.35 + 0.65 * h))[..., None]
    blended = (base * (1.0 - a) + colour * a).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(blended, "RGB").save(out, format="PNG")
    return out.getvalue()


def normalise_png(data: bytes) -> bytes:
    """Re-encodes any image Pillow reads as RGB PNG (ReportLab's safest input)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format="PNG")
    return out.getvalue()
