"""Raw-image augmentation that imitates another lab: framing and zoom, source size, stain
and tint, gamma, focus, JPEG and sensor noise -- applied to the decoded image BEFORE the
standardising pixel pipeline, so the model learns from what that pipeline makes of a
foreign slide (imperfect re-framing included), not from a perfectly standardised one.

This generator is deliberately not the benchmark's (bench/shift/shifts.py): different
code and different parameterisations (optical-density scaling here, HED/HSV there;
Gaussian blur here, a defocus disk there; Gaussian read noise here, Poisson shot noise
there), so a model is never trained on the benchmark's own shifts.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class LabAugmentConfig:
    crop_prob: float = 0.5            # re-frame: keep a random window of the slide
    crop_fraction: tuple[float, float] = (0.6, 1.0)
    resize_prob: float = 0.7          # the source arrives at another pixel size
    size_range: tuple[float, float] = (72.0, 420.0)
    stain_prob: float = 0.8           # optical density scaled and shifted per channel
    od_scale: tuple[float, float] = (0.7, 1.35)
    od_shift: float = 0.06
    tint_prob: float = 0.5            # background/illuminant tint (per-channel gain)
    tint: float = 0.12
    gamma_prob: float = 0.4
    gamma: tuple[float, float] = (0.7, 1.45)
    blur_prob: float = 0.3
    blur_radius: tuple[float, float] = (0.3, 1.6)
    jpeg_prob: float = 0.4
    jpeg_quality: tuple[int, int] = (35, 95)
    noise_prob: float = 0.3
    noise_sigma: tuple[float, float] = (1.0, 7.0)


def augment_image(img: np.ndarray, rng: np.random.Generator, cfg: LabAugmentConfig = LabAugmentConfig()) -> np.ndarray:
    """One HxWx3 uint8 RGB image -> a new uint8 RGB image (any size) as another lab might send it."""
    h, w = img.shape[:2]
    out = img
    if rng.random() < cfg.crop_prob:
        f = rng.uniform(*cfg.crop_fraction)
        ch, cw = max(8, int(round(h * f))), max(8, int(round(w * f)))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        out = out[y0:y0 + ch, x0:x0 + cw]
    pil = Image.fromarray(np.ascontiguousarray(out))
    if rng.random() < cfg.resize_prob:
        side = float(np.exp(rng.uniform(np.log(cfg.size_range[0]), np.log(cfg.size_range[1]))))
        s = side / max(pil.size)
        pil = pil.resize((max(8, round(pil.size[0] * s)), max(8, round(pil.size[1] * s))),
                         Image.Resampling.BILINEAR if s > 1 else Image.Resampling.BOX)
    x = np.asarray(pil, dtype=np.float32)
    if rng.random() < cfg.stain_prob:
        od = -np.log((x + 1.0) / 256.0)
        od = od * rng.uniform(*cfg.od_scale, size=3).astype(np.float32) \
            + rng.uniform(-cfg.od_shift, cfg.od_shift, size=3).astype(np.float32)
        x = 256.0 * np.exp(-np.maximum(od, 0.0)) - 1.0
    if rng.random() < cfg.tint_prob:
        x = x * (1.0 + rng.uniform(-cfg.tint, cfg.tint, size=3)).astype(np.float32)
    if rng.random() < cfg.gamma_prob:
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** np.float32(rng.uniform(*cfg.gamma))
    if rng.random() < cfg.noise_prob:
        x = x + rng.normal(0.0, rng.uniform(*cfg.noise_sigma), size=x.shape).astype(np.float32)
    pil = Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    if rng.random() < cfg.blur_prob:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*cfg.blur_radius))))
    if rng.random() < cfg.jpeg_prob:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
        buf.seek(0)
        pil = Image.open(buf).convert("RGB")
    return np.asarray(pil, dtype=np.uint8)


def augmented_copy(images: Sequence[np.ndarray], spec_dict: dict, *, seed: int,
                   cfg: LabAugmentConfig = LabAugmentConfig(), chunk: int = 1024) -> np.ndarray:
    """Every image augmented once (seeded) and run through the spec's pixel pipeline ->
    the uint8 model images [N, S, S, 3] (normalisation is applied later, in tf.data)."""
    from hemovision_pixels import PreprocessSpec, model_image, preprocess_batch

    spec = PreprocessSpec.from_dict(spec_dict)
    rng = np.random.default_rng(seed)
    s = spec.input_size
    out = np.empty((len(images), s, s, 3), np.uint8)
    for i in range(0, len(images), chunk):
        batch = [augment_image(im, rng, cfg) for im in images[i:i + chunk]]
        out[i:i + len(batch)] = model_image(preprocess_batch(batch, spec, threads=0), spec)
    return out
