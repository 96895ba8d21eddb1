"""OpenCV implementations of the standardisation steps (locate.cpp), written from the
same description: the tests cross-check the C++ against them and bench-preprocess
times both."""

from __future__ import annotations

import math

import cv2
import numpy as np


def locate_cell(img: np.ndarray, *, work_size=96, white_percentile=0.9, min_od=0.4, dilate=2, min_area=0.003,
                **_ignored) -> dict:
    h, w = img.shape[:2]
    s = work_size / max(h, w)
    wh = max(1, min(h, int(math.floor(h * s + 0.5))))
    ww = max(1, min(w, int(math.floor(w * s + 0.5))))
    work = img if (wh, ww) == (h, w) else cv2.resize(img, (ww, wh), interpolation=cv2.INTER_AREA)
    n = wh * ww
    white = []
    for c in range(3):
        hist = np.bincount(work[..., c].ravel(), minlength=256)
        white.append(float(max(1, int(np.searchsorted(np.cumsum(hist), white_percentile * n)))))
    od = np.log(white[0] / np.maximum(np.arange(256), 1))
    q_of = np.clip(np.floor(np.abs(od * 100.0) + 0.5) * np.sign(od), 0, 255).astype(np.uint8)
    q = q_of[work[..., 0]]
    otsu, _ = cv2.threshold(q, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = max(int(otsu), int(math.floor(min_od * 100 + 0.5)))
    mask = (q > t).astype(np.uint8)
    if dilate:
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=dilate, borderType=cv2.BORDER_CONSTANT,
                          borderValue=0)
    count, labels, stats, cent = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sigma = 0.35 * max(wh, ww)
    best, best_score = 0, 0.0
    for i in range(1, count):
        cx, cy = cent[i][0] + 0.5, cent[i][1] + 0.5
        d2 = ((cx - ww / 2) ** 2 + (cy - wh / 2) ** 2) / sigma**2
        score = stats[i, cv2.CC_STAT_AREA] * math.exp(-0.5 * d2)
        if score > best_score:
            best, best_score = i, score
    out = {"cell_found": False, "white": tuple(white), "threshold_od": t / 100}
    if best == 0 or stats[best, cv2.CC_STAT_AREA] < min_area * n:
        return out
    fx, fy = w / ww, h / wh
    bw, bh = stats[best, cv2.CC_STAT_WIDTH], stats[best, cv2.CC_STAT_HEIGHT]
    nucleus = work[(labels == best) & (q > t)].astype(np.float64)
    out.update(cell_found=True, cx=(cent[best][0] + 0.5) * fx, cy=(cent[best][1] + 0.5) * fy,
               size=max(bw * fx, bh * fy), area_fraction=stats[best, cv2.CC_STAT_AREA] / n,
               nucleus=tuple(nucleus.mean(axis=0)) if len(nucleus) else (0.0, 0.0, 0.0))
    return out


def reframe(img: np.ndarray, found: dict, size: int, *, target_fraction=0.4, min_zoom=0.5, max_zoom=2.5,
            **_ignored) -> np.ndarray:
    """Crop the window around the cell (background-white fill outside) and INTER_AREA-resize."""
    h, w = img.shape[:2]
    base = min(h, w)
    side, cx, cy = float(base), w / 2, h / 2
    if found["cell_found"]:
        # locate.cpp computes the zoom in float32 (its parameters and the cell size are float)
        f32 = np.float32
        zoom = float(f32(f32(base) * f32(target_fraction)) / max(f32(found["size"]), f32(1.0)))
        side = base / min(max(zoom, float(np.float32(min_zoom))), float(np.float32(max_zoom)))
        cx, cy = found["cx"], found["cy"]
    iside = max(1, int(math.floor(side + 0.5)))
    x0 = int(math.floor(cx - iside / 2 + 0.5))
    y0 = int(math.floor(cy - iside / 2 + 0.5))
    fill = [int(v) for v in found["white"]]
    window = cv2.copyMakeBorder(img, max(0, -y0), max(0, y0 + iside - h), max(0, -x0), max(0, x0 + iside - w),
                                cv2.BORDER_CONSTANT, value=fill)
    window = window[max(0, y0):max(0, y0) + iside, max(0, x0):max(0, x0) + iside]
    interp = cv2.INTER_AREA if iside > size else cv2.INTER_LINEAR
    return cv2.resize(window, (size, size), interpolation=interp)
