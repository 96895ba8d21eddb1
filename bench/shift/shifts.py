"""The shift benchmark's own generator: seeded, documented image shifts that imitate another
lab's microscope, camera, stain and framing.

Kept apart from training on purpose: training augments with
services/training/.../ml/lab_augment.py (optical-density scaling, Gaussian blur, Gaussian read
noise, random crops); this file uses other code and other parameterisations (HED and HSV
jitter, a defocus disk, Poisson shot noise, reflect-padded zoom about the centre, fixed
levels), so no model is trained on the benchmark's own shifts.

Every shift is ``fn(image, rng) -> image`` on HxWx3 uint8 RGB; ``SHIFTS`` lists them by
family and level. The per-image rng is seeded by (shift name, image index), so a run is
reproducible and two models see exactly the same shifted images.
"""
from __future__ import annotations

import io
import zlib
from typing import Callable

import numpy as np
from PIL import Image

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def zoom(factor: float) -> Shift:
    """Magnification x factor about the image centre (>1: the cell fills more of the frame;
    <1: more slide around it, reflect-padded), output at the source size."""
    def fn(img, rng):
        h, w = img.shape[:2]
        if factor >= 1:
            ch, cw = max(2, round(h / factor)), max(2, round(w / factor))
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            crop = img[y0:y0 + ch, x0:x0 + cw]
            return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((w, h), Image.Resampling.BICUBIC))
        ph, pw = round(h * (1 / factor - 1) / 2), round(w * (1 / factor - 1) / 2)
        padded = np.pad(img, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
        return np.asarray(Image.fromarray(padded).resize((w, h), Image.Resampling.LANCZOS))
    return fn


def off_centre(fraction: float) -> Shift:
    """The frame moved by `fraction` of its side in a random direction (reflect padding)."""
    def fn(img, rng):
        h, w = img.shape[:2]
        a = rng.uniform(0, 2 * np.pi)
        dy, dx = round(np.sin(a) * fraction * h), round(np.cos(a) * fraction * w)
        padded = np.pad(img, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="reflect")
        y0, x0 = abs(dy) + dy, abs(dx) + dx
        return np.ascontiguousarray(padded[y0:y0 + h, x0:x0 + w])
    return fn


def hed(h_gain: float, e_gain: float) -> Shift:
    """Haematoxylin / eosin concentrations scaled (scikit-image's HED deconvolution), +-10 % per image."""
    from skimage.color import hed2rgb, rgb2hed

    def fn(img, rng):
        x = rgb2hed(img)
        x[..., 0] *= h_gain * rng.uniform(0.9, 1.1)
        x[..., 1] *= e_gain * rng.uniform(0.9, 1.1)
        return _u8(hed2rgb(x) * 255)
    return fn


def hsv(hue: float, sat: float) -> Shift:
    """Hue rotated by `hue` (fraction of the circle) and saturation scaled by `sat`."""
    def fn(img, rng):
        x = np.asarray(Image.fromarray(img).convert("HSV")).astype(np.float32)
        x[..., 0] = (x[..., 0] + hue * 255) % 256
        x[..., 1] = x[..., 1] * sat
        return np.asarray(Image.fromarray(_u8(x), "HSV").convert("RGB"))
    return fn


def white_balance(gains: tuple[float, float, float]) -> Shift:
    """A camera's white balance: per-channel gains on the whole image."""
    g = np.asarray(gains, np.float32)
    return lambda img, rng: _u8(img.astype(np.float32) * g)


def background(tint: tuple[float, float, float]) -> Shift:
    """A tinted background: bright pixels (glass, plasma) pulled towards `tint` (RGB 0..255),
    the cell and red cells much less (weight = brightness^4)."""
    t = np.asarray(tint, np.float32)

    def fn(img, rng):
        x = img.astype(np.float32)
        wgt = (x.mean(axis=2, keepdims=True) / 255.0) ** 4
        return _u8(x * (1 - wgt) + (x * t / 255.0) * wgt)
    return fn


def defocus(radius: float) -> Shift:
    """Out of focus: convolution with a uniform disk of `radius` pixels (at 128 px)."""
    from scipy.ndimage import convolve

    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    k = (yy ** 2 + xx ** 2 <= radius ** 2).astype(np.float32)
    k /= k.sum()

    def fn(img, rng):
        x = img.astype(np.float32)
        return _u8(np.stack([convolve(x[..., c], k, mode="reflect") for c in range(3)], axis=-1))
    return fn


def jpeg(quality: int) -> Shift:
    def fn(img, rng):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return fn


def gamma(g: float) -> Shift:
    lut = _u8(255.0 * (np.arange(256) / 255.0) ** g)
    return lambda img, rng: lut[img]


def shot_noise(peak: float) -> Shift:
    """Photon (Poisson) noise: a white pixel collects `peak` photons."""
    return lambda img, rng: _u8(rng.poisson(img.astype(np.float64) * (peak / 255.0)) * (255.0 / peak))


def source_size(side: int) -> Shift:
    """The same field of view delivered at side x side pixels (camera resolution)."""
    def fn(img, rng):
        h, w = img.shape[:2]
        method = Image.Resampling.LANCZOS if side < max(h, w) else Image.Resampling.BICUBIC
        return np.asarray(Image.fromarray(img).resize((side, round(side * h / w)), method))
    return fn


def lab_like(img, rng):
    """The combination a new lab most often brings: 1.8x zoom, warmer white balance, stronger
    haematoxylin, JPEG 70, at 300 px."""
    for fn in (zoom(1.8), white_balance((1.0, 0.95, 0.88)), hed(1.25, 0.85), source_size(300), jpeg(70)):
        img = fn(img, rng)
    return img


# family -> {level name: shift}
SHIFTS: dict[str, dict[str, Shift]] = {
    "zoom": {"0.5x": zoom(0.5), "0.75x": zoom(0.75), "1.5x": zoom(1.5), "2.0x": zoom(2.0), "2.5x": zoom(2.5)},
    "off_centre": {"20%": off_centre(0.20), "30%": off_centre(0.30)},
    "stain_hed": {"H+30% E-20%": hed(1.3, 0.8), "H-25% E+30%": hed(0.75, 1.3)},
    "stain_hsv": {"hue+0.04 sat x0.7": hsv(0.04, 0.7), "hue-0.04 sat x1.3": hsv(-0.04, 1.3)},
    "white_balance": {"warm": white_balance((1.0, 0.93, 0.82)), "cool": white_balance((0.86, 0.95, 1.0))},
    "background": {"yellow": background((255, 240, 170)), "pink": background((255, 205, 225))},
    "defocus": {"disk 1.5px": defocus(1.5), "disk 3px": defocus(3.0)},
    "jpeg": {"q30": jpeg(30), "q50": jpeg(50), "q70": jpeg(70), "q95": jpeg(95)},
    "gamma": {"0.6": gamma(0.6), "1.6": gamma(1.6)},
    "noise": {"shot peak 30": shot_noise(30), "shot peak 100": shot_noise(100)},
    "source_size": {"100px": source_size(100), "200px": source_size(200), "400px": source_size(400),
                    "640px": source_size(640)},
    "combined": {"lab-like": lab_like},
}


def rng_for(shift_name: str, index: int, seed: int = 0) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(shift_name.encode()), index, seed])
