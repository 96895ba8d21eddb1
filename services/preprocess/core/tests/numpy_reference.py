"""Plain NumPy (float64) references for the C++ ops.

Written from the definitions, not from the C++: resize from pixel-coverage
fractions, Lab from the CIE formulas with OpenCV's sRGB/D65 constants, CLAHE from
OpenCV's algorithm description, blur as a dense convolution.
"""

from __future__ import annotations

import numpy as np


def axis_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Dense [n_out, n_in] resampling matrix: area coverage when shrinking,
    half-pixel-centre bilinear when enlarging."""
    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for o in range(n_out):
        if n_in == n_out:
            m[o, o] = 1.0
        elif n_in > n_out:
            lo, hi = o * scale, (o + 1) * scale
            for s in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
                m[o, s] = max(0.0, min(hi, s + 1) - max(lo, s)) / scale
        else:
            f = (o + 0.5) * scale - 0.5
            s = int(np.floor(f))
            f -= s
            if s < 0:
                s, f = 0, 0.0
            if s >= n_in - 1:
                s, f = n_in - 1, 0.0
            m[o, s] += 1 - f
            if f > 0:
                m[o, s + 1] += f
    return m


def round_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    my = axis_matrix(img.shape[0], out_h)
    mx = axis_matrix(img.shape[1], out_w)
    x = img.astype(np.float64)
    x = x if x.ndim == 3 else x[:, :, None]
    t = (my @ x.reshape(x.shape[0], -1)).reshape(out_h, x.shape[1], x.shape[2])
    out = (t.transpose(0, 2, 1) @ mx.T).transpose(0, 2, 1)
    return round_u8(out if img.ndim == 3 else out[:, :, 0])


def square(img: np.ndarray, crop: str) -> np.ndarray:
    h, w = img.shape[:2]
    if crop == "center_square":
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        return img[y0 : y0 + s, x0 : x0 + s]
    if crop == "pad_square":
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        return np.pad(img, ((top, s - h - top), (left, s - w - left), (0, 0)), mode="edge")
    return img


def normalize(img: np.ndarray, mean, std) -> np.ndarray:
    return ((img.astype(np.float32) / np.float32(255) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


# --- colour ---------------------------------------------------------------------

_M = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.950456, 1.0, 1.088754])


def _linear(rgb8: np.ndarray) -> np.ndarray:
    x = rgb8.astype(np.float64) / 255
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _gamma(lin: np.ndarray) -> np.ndarray:
    x = np.clip(lin, 0, 1)
    return 255 * np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def rgb_to_lab_float(rgb8: np.ndarray) -> np.ndarray:
    xyz = _linear(rgb8) @ _M.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    y = xyz[..., 1]
    L = np.where(y > 0.008856, 116 * f[..., 1] - 16, 903.3 * y)
    return np.stack([L, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_float_to_rgb8(lab: np.ndarray) -> np.ndarray:
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    small = L <= 7.9996248
    y = np.where(small, L / 903.3, ((L + 16) / 116) ** 3)
    fy = np.where(small, 7.787 * y + 16 / 116, (L + 16) / 116)

    def finv(f):
        return np.where(f <= 0.206893, (f - 16 / 116) / 7.787, f**3)

    xyz = np.stack([finv(fy + a / 500), y, finv(fy - b / 200)], axis=-1) * _WHITE
    return round_u8(_gamma(xyz @ np.linalg.inv(_M).T))


def rgb_to_lab8(rgb8: np.ndarray) -> np.ndarray:
    lab = rgb_to_lab_float(rgb8)
    return round_u8(np.stack([lab[..., 0] * 255 / 100, lab[..., 1] + 128, lab[..., 2] + 128], axis=-1))


def lab8_to_rgb(lab8: np.ndarray) -> np.ndarray:
    lab = lab8.astype(np.float64)
    return lab_float_to_rgb8(np.stack([lab[..., 0] * 100 / 255, lab[..., 1] - 128, lab[..., 2] - 128], axis=-1))


def reinhard(rgb8: np.ndarray, target_mean, target_std) -> np.ndarray:
    lab = rgb_to_lab_float(rgb8).reshape(-1, 3)
    m, s = lab.mean(0), lab.std(0)
    k = np.where(s > 1e-6, np.asarray(target_std) / np.where(s > 1e-6, s, 1), 1.0)
    out = (lab - m) * k + np.asarray(target_mean)
    return lab_float_to_rgb8(out.reshape(rgb8.shape))


def grey_world(rgb8: np.ndarray) -> np.ndarray:
    sums = rgb8.reshape(-1, 3).astype(np.float64).sum(0)
    grey = sums.mean()
    k = np.where(sums > 0, grey / np.where(sums > 0, sums, 1), 1.0)
    return round_u8(rgb8 * k)


# --- CLAHE (OpenCV's algorithm) ------------------------------------------------


def _reflect101(i: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.abs(i) % period
    return np.where(i >= n, period - i, i)


def clahe(gray: np.ndarray, clip_limit: float, tiles: int) -> np.ndarray:
    h, w = gray.shape
    if h % tiles == 0 and w % tiles == 0:
        eh, ew = h, w
    else:  # OpenCV pads both axes by (tiles - remainder) once either is uneven
        eh, ew = h + tiles - h % tiles, w + tiles - w % tiles
    ext = gray[_reflect101(np.arange(eh), h)][:, _reflect101(np.arange(ew), w)]
    th, tw = eh // tiles, ew // tiles
    area = th * tw
    clip = max(int(clip_limit * area / 256), 1) if clip_limit > 0 else 0
    luts = np.zeros((tiles, tiles, 256))
    for ty in range(tiles):
        for tx in range(tiles):
            hist = np.bincount(ext[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw].ravel(), minlength=256)
            if clip > 0:
                excess = int(np.maximum(hist - clip, 0).sum())
                hist = np.minimum(hist, clip) + excess // 256
                residual = excess % 256
                if residual:
                    step = max(256 // residual, 1)
                    idx = np.arange(0, 256, step)[:residual]
                    hist[idx] += 1
            luts[ty, tx] = np.rint(np.cumsum(hist).astype(np.float32) * np.float32(255.0 / area))
    luts = np.clip(luts, 0, 255)

    def coords(n, t):
        f = np.arange(n) / t - 0.5
        i1 = np.floor(f).astype(int)
        a = f - i1
        return np.maximum(i1, 0), np.minimum(i1 + 1, tiles - 1), a

    y1, y2, ya = coords(h, th)
    x1, x2, xa = coords(w, tw)
    v = gray.astype(int)
    Y1, Y2 = y1[:, None], y2[:, None]
    X1, X2 = x1[None, :], x2[None, :]
    top = luts[Y1, X1, v] * (1 - xa) + luts[Y1, X2, v] * xa
    bot = luts[Y2, X1, v] * (1 - xa) + luts[Y2, X2, v] * xa
    return round_u8(top * (1 - ya)[:, None] + bot * ya[:, None])


def clahe_l(rgb8: np.ndarray, clip_limit: float, tiles: int) -> np.ndarray:
    lab = rgb_to_lab8(rgb8)
    lab[..., 0] = clahe(np.ascontiguousarray(lab[..., 0]), clip_limit, tiles)
    return lab8_to_rgb(lab)


# --- blur ------------------------------------------------------------------------


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    ksize = int(np.rint(sigma * 6 + 1)) | 1 if sigma > 0 else 1
    if ksize == 1:
        return img.copy()
    r = ksize // 2
    k = np.exp(-((np.arange(ksize) - r) ** 2) / (2 * sigma * sigma))
    k /= k.sum()
    h, w = img.shape[:2]
    x = img.astype(np.float64)
    ys = _reflect101(np.arange(-r, h + r), h)
    xs = _reflect101(np.arange(-r, w + r), w)
    p = x[ys][:, xs]
    tmp = sum(k[i] * p[:, i : i + w] for i in range(ksize))
    out = sum(k[i] * tmp[i : i + h] for i in range(ksize))
    return round_u8(out)


def pipeline(img: np.ndarray, spec: dict) -> np.ndarray:
    s = spec["input_size"]
    x = resize(np.ascontiguousarray(square(img, spec.get("crop", "center_square"))), s, s)
    stain = spec.get("stain_normalization")
    if stain and stain["method"] == "reinhard":
        x = reinhard(x, stain["target_mean"], stain["target_std"])
    elif stain and stain["method"] == "grey_world":
        x = grey_world(x)
    if spec.get("clahe"):
        x = clahe_l(x, spec["clahe"].get("clip_limit", 2.0), spec["clahe"].get("tiles", 8))
    if spec.get("blur_sigma", 0):
        x = gaussian_blur(x, spec["blur_sigma"])
    return normalize(x, spec.get("mean", [0, 0, 0]), spec.get("std", [1, 1, 1]))
