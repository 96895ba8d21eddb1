"""Model-ready tensors from decoded RGB images, through the C++ chain."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt

from . import _core
from .spec import PreprocessSpec

U8Image = npt.NDArray[np.uint8]
F32Array = npt.NDArray[np.float32]


def as_rgb_u8(image: np.ndarray, what: str = "image") -> U8Image:
    """Check an HxWx3 uint8 array; returns it unchanged unless its pixels are not
    packed (e.g. a channel-reversed view), in which case it is made contiguous.
    Row-strided views such as image[y0:y1, x0:x1] pass through without a copy."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{what} must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must have shape (H, W, 3), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    h, w = image.shape[:2]
    # NumPy leaves the stride of a length-1 axis arbitrary, so only longer axes count.
    packed = image.strides[2] == 1 and (w == 1 or image.strides[1] == 3)
    if not packed or (h > 1 and image.strides[0] < 3 * w):
        image = np.ascontiguousarray(image)
    return image


def _threads(threads: int) -> int:
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads == 0:
        # Affinity, not cpu_count: containers and taskset limit what we may use.
        return len(os.sched_getaffinity(0))
    return threads


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> F32Array:
    """One HxWx3 uint8 RGB image -> float32 [S, S, 3] (GIL released while it runs)."""
    out: F32Array = _core.preprocess(as_rgb_u8(image), spec._native)
    return out


@dataclass(frozen=True)
class PipelineInfo:
    """What the standardisation steps of a v2 spec saw (defaults for a v1 spec)."""

    cell_found: bool = False
    cx: float = 0.0              # centre of the cell, source pixels
    cy: float = 0.0
    size: float = 0.0            # larger bounding-box side of the nucleus region, source pixels
    area_fraction: float = 0.0
    threshold_od: float = 0.0
    white: tuple[float, float, float] = (255.0, 255.0, 255.0)  # background white, RGB
    nucleus: tuple[float, float, float] = (0.0, 0.0, 0.0)      # mean RGB of the nucleus pixels
    zoom: float = 1.0            # the zoom the cell's size asked for, before clamping

    @classmethod
    def from_native(cls, d: dict) -> "PipelineInfo":
        return cls(**{**d, "white": tuple(d["white"]), "nucleus": tuple(d["nucleus"])})

    def nucleus_od(self) -> tuple[float, float, float]:
        """The nucleus' optical density per channel relative to the slide's own white: how this
        lab's stain renders a nucleus, independent of the background tint."""
        od = [math.log(max(w, 1.0) / max(v, 1.0)) for w, v in zip(self.white, self.nucleus, strict=True)]
        return (od[0], od[1], od[2])


def preprocess_with_info(image: np.ndarray, spec: PreprocessSpec) -> tuple[F32Array, PipelineInfo]:
    """preprocess() plus what the spec's standardisation steps found (cell, zoom, background)."""
    out, info = _core.preprocess_with_info(as_rgb_u8(image), spec._native)
    return out, PipelineInfo.from_native(info)


# Review reasons the standardisation steps can give (docs/preprocessing.md):
CELL_NOT_FOUND = "cell_not_found"          # no nucleus-stained region: original framing kept
CELL_SIZE_UNUSUAL = "cell_size_unusual"    # the cell asked for a zoom outside [min_zoom, max_zoom]
STAIN_UNUSUAL = "stain_unusual"            # the nucleus' stain is far from the reference (stain_check)
REVIEW_REASONS = (CELL_NOT_FOUND, CELL_SIZE_UNUSUAL, STAIN_UNUSUAL)


def review_reasons(info: PipelineInfo, spec: PreprocessSpec) -> list[str]:
    """Why a person should look at this cell, from what the standardisation saw (empty for a
    spec without `locate`): the model's calibrated confidence does not hold for such cells."""
    loc = spec.locate
    if loc is None:
        return []
    if not info.cell_found:
        return [CELL_NOT_FOUND]
    reasons = []
    if not loc.min_zoom <= info.zoom <= loc.max_zoom:
        reasons.append(CELL_SIZE_UNUSUAL)
    if spec.stain_check is not None and spec.stain_check.distance(info.nucleus_od()) > spec.stain_check.max_distance:
        reasons.append(STAIN_UNUSUAL)
    return reasons


def model_image(tensor: F32Array, spec: PreprocessSpec) -> U8Image:
    """The uint8 RGB image a [S, S, 3] tensor was normalised from: normalisation is a
    per-channel table of 256 distinct floats, so rounding its inverse is exact."""
    mean = np.asarray(spec.mean, np.float64)
    std = np.asarray(spec.std, np.float64)
    return np.clip(np.rint((tensor.astype(np.float64) * std + mean) * 255.0), 0, 255).astype(np.uint8)


def preprocess_batch(images: Sequence[np.ndarray], spec: PreprocessSpec, threads: int = 0) -> F32Array:
    """Many images -> float32 [N, S, S, 3] on `threads` C++ threads (0 = all usable
    cores) with the GIL released. Inputs are read in place, not copied."""
    checked = [as_rgb_u8(im, f"images[{i}]") for i, im in enumerate(images)]
    out: F32Array = _core.preprocess_batch(checked, spec._native, _threads(threads))
    return out
