"""The individual C++ ops behind the pipeline, for tests, benchmarks and notebooks.

All take and return uint8 arrays (HxWx3 unless noted) and release the GIL.
Colour conversions use OpenCV's 8-bit Lab scaling: L * 255 / 100, a + 128, b + 128.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from . import _core
from .pipeline import as_rgb_u8

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


def resize_area(image: U8, out_h: int, out_w: int) -> U8:
    """Area averaging on shrinking axes, bilinear (half-pixel centres) on growing ones.
    Accepts HxW or HxWxC (C <= 4)."""
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be HxW or HxWxC, got shape {image.shape}")
    image = np.ascontiguousarray(image) if not image.flags.c_contiguous else image
    out: U8 = _core.resize(image, out_h, out_w)
    return out


def square_resize(image: U8, size: int, crop: Literal["center_square", "pad_square", "none"]) -> U8:
    """Centre crop (or edge-replicate pad) to a square, then resize to size x size."""
    out: U8 = _core.square_resize(as_rgb_u8(image), size, crop)
    return out


def rgb_to_lab(image: U8) -> U8:
    out: U8 = _core.rgb_to_lab(as_rgb_u8(image))
    return out


def lab_to_rgb(image: U8) -> U8:
    out: U8 = _core.lab_to_rgb(as_rgb_u8(image))
    return out


def clahe(gray: U8, clip_limit: float = 2.0, tiles: int = 8) -> U8:
    """CLAHE on a single-channel HxW uint8 image (OpenCV createCLAHE semantics)."""
    if gray.ndim != 2:
        raise ValueError(f"clahe expects an HxW image, got shape {gray.shape}")
    out: U8 = _core.clahe(np.ascontiguousarray(gray), clip_limit, tiles, tiles)
    return out


def clahe_l(image: U8, clip_limit: float = 2.0, tiles: int = 8) -> U8:
    """RGB -> Lab, CLAHE on L, -> RGB."""
    out: U8 = _core.clahe_l(as_rgb_u8(image), clip_limit, tiles)
    return out


def gaussian_blur(image: U8, sigma: float) -> U8:
    """Gaussian blur, kernel size round(6 sigma + 1) | 1, reflect-101 borders."""
    out: U8 = _core.gaussian_blur(as_rgb_u8(image), sigma)
    return out


def gaussian_ksize(sigma: float) -> int:
    return int(_core.gaussian_ksize(sigma))


def reinhard(image: U8, target_mean: tuple[float, float, float], target_std: tuple[float, float, float]) -> U8:
    """Reinhard colour transfer in CIE Lab (float) to the target per-channel mean/std."""
    out: U8 = _core.reinhard(as_rgb_u8(image), target_mean, target_std)
    return out


def grey_world(image: U8) -> U8:
    out: U8 = _core.grey_world(as_rgb_u8(image))
    return out


def normalize(image: U8, mean: tuple[float, float, float], std: tuple[float, float, float]) -> F32:
    """(x / 255 - mean) / std per channel, float32."""
    out: F32 = _core.normalize(as_rgb_u8(image), mean, std)
    return out
