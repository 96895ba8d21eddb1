"""Preprocessing benchmark: hemovision_pixels (C++) vs OpenCV vs NumPy/Pillow/scikit-image.

    .venv/bin/python bench/preprocess/bench_preprocess.py [--n 1000] [--json bench/results/preprocess.json]

Images: the first N rows of ../shared/data/pbc_128/splits.csv with split == test,
decoded beforehand, and the same images upscaled (bicubic) to 363x360 -- the size of
the PBC originals, which are not in shared/. Pipelines, as in ../shared/ANCHORS.md:

  full:  centre crop -> resize to 128 (area) -> CLAHE on Lab L (clip 2, 8x8 tiles)
         -> float32 per-channel normalisation
  basic: centre crop -> resize to 128 (area) -> float32 normalisation

Single image: one thread, median ms per image over all N. Batch: ms per image for
the whole set (our batch API on 1 thread and on all cores vs a Python loop).

Standardisation (spec v2): each new step -- locate the cell; locate + re-frame -- against
the OpenCV implementation of the same algorithm (services/preprocess/core/tests/
opencv_reference.py, outputs cross-checked in the tests), and the whole standardised
pipeline of the newest model's spec against that model's bare `explain` at batch 1,
timed in this run (target: <= 10 %).
Every figure comes from this one run on this machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image
from skimage import color, exposure

import hemovision_pixels
from hemovision_pixels import LocateSpec, PreprocessSpec, _core, preprocess, preprocess_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "preprocess" / "core" / "tests"))
import opencv_reference  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "pbc_128"
SIZE = 128
MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([0.25, 0.25, 0.25], np.float32)
CLIP, TILES = 2.0, 8

FULL = PreprocessSpec.from_dict(
    {"version": 1, "input_size": SIZE, "crop": "center_square", "clahe": {"clip_limit": CLIP, "tiles": TILES},
     "mean": MEAN.tolist(), "std": STD.tolist()}
)
BASIC = PreprocessSpec.from_dict(
    {"version": 1, "input_size": SIZE, "crop": "center_square", "mean": MEAN.tolist(), "std": STD.tolist()}
)

Fn = Callable[[np.ndarray], np.ndarray]


def load_images(n: int) -> list[np.ndarray]:
    with open(DATA / "splits.csv", newline="") as f:
        paths = [r["path"] for r in csv.DictReader(f) if r["split"] == "test"][:n]
    out = []
    for p in paths:
        with Image.open(DATA / p) as im:
            out.append(np.ascontiguousarray(np.asarray(im.convert("RGB"))))
    return out


def upscale(images: list[np.ndarray], h: int = 363, w: int = 360) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(im).resize((w, h), Image.Resampling.BICUBIC)) for im in images]


def centre_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return img[y0 : y0 + s, x0 : x0 + s]


def normalise_np(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) * np.float32(1 / 255) - MEAN) / STD


# --- OpenCV (one thread) -----------------------------------------------------------
_clahe = cv2.createCLAHE(clipLimit=CLIP, tileGridSize=(TILES, TILES))


def cv_basic(img: np.ndarray) -> np.ndarray:
    x = cv2.resize(centre_square(img), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return normalise_np(x)


def cv_full(img: np.ndarray) -> np.ndarray:
    x = cv2.resize(centre_square(img), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(x, cv2.COLOR_RGB2Lab)
    L, a, b = cv2.split(lab)
    lab = cv2.merge((_clahe.apply(L), a, b))
    return normalise_np(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB))


# --- NumPy + Pillow (BOX) + scikit-image ----------------------------------------------


def pil_resize(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(centre_square(img))).resize((SIZE, SIZE), Image.Resampling.BOX))


def sk_basic(img: np.ndarray) -> np.ndarray:
    return normalise_np(pil_resize(img))


def sk_full(img: np.ndarray) -> np.ndarray:
    lab = color.rgb2lab(pil_resize(img))
    # skimage's clip_limit is a fraction of the tile area per bin; OpenCV's clip 2
    # on 256 bins is 2/256 of it.
    lab[..., 0] = 100 * exposure.equalize_adapthist(
        lab[..., 0] / 100, kernel_size=SIZE // TILES, clip_limit=CLIP / 256, nbins=256
    )
    rgb = np.clip(np.rint(color.lab2rgb(lab) * 255), 0, 255).astype(np.uint8)
    return normalise_np(rgb)


def interleaved_medians(fns: dict[str, Fn], images: list[np.ndarray]) -> dict[str, float]:
    """Median ms per image for each implementation, taking turns image by image, so
    every implementation sees the same background load (this machine is shared)."""
    for fn in fns.values():  # warm caches, tables, thread-local buffers
        for im in images[:20]:
            fn(im)
    times: dict[str, list[int]] = {k: [] for k in fns}
    for im in images:
        for k, fn in fns.items():
            t0 = time.perf_counter_ns()
            fn(im)
            times[k].append(time.perf_counter_ns() - t0)
    return {k: statistics.median(v) / 1e6 for k, v in times.items()}


CHUNK = 50


def interleaved_batches(fns: dict[str, Callable[[list[np.ndarray]], object]], images: list[np.ndarray]) -> dict[str, float]:
    """ms per image over chunks of CHUNK images, implementations taking turns chunk by
    chunk; the median over chunks, so a pre-empted chunk does not decide the figure."""
    for fn in fns.values():
        fn(images[:CHUNK])
    per_image: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(0, len(images) - CHUNK + 1, CHUNK):
        chunk = images[i : i + CHUNK]
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(chunk)
            per_image[k].append((time.perf_counter() - t0) / len(chunk) * 1e3)
    return {k: statistics.median(v) for k, v in per_image.items()}


def newest_model() -> Path:
    base = REPO / "models" / "hemovision"
    return base / str(max(int(p.name) for p in base.iterdir() if p.name.isdigit()))


def explain_b1_ms(model_dir: Path, size: int, calls: int = 200) -> float:
    """Median ms of the bare SavedModel's compiled `explain` signature at batch 1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_dir)).signatures["explain"]
    x = tf.constant(np.random.default_rng(0).random((1, size, size, 3), np.float32))
    for _ in range(20):
        fn(image=x)
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn(image=x)
        ts.append(time.perf_counter_ns() - t0)
    return statistics.median(ts) / 1e6


def standardisation(sets: dict[str, list[np.ndarray]], model_dir: Path) -> dict[str, dict[str, float]]:
    params = LocateSpec()
    native, kw = params.native(), params.to_dict()
    meta = json.loads((model_dir / "assets.extra" / "hemovision.json").read_text())
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    out: dict[str, dict[str, float]] = {}
    for name, images in sets.items():
        r = interleaved_medians({
            "ours_locate": lambda im: _core.locate_cell(im, native),
            "opencv_locate": lambda im: opencv_reference.locate_cell(im, **kw),
            "ours_locate_reframe": lambda im: _core.reframe(im, native, 64),
            "opencv_locate_reframe": lambda im: opencv_reference.reframe(
                im, opencv_reference.locate_cell(im, **kw), 64, **kw),
            "ours_model_spec": lambda im: preprocess(im, spec),
        }, images)
        out[name] = r
    explain = explain_b1_ms(model_dir, spec.input_size)
    out["model"] = {"path": str(model_dir), "spec_version": spec.version, "explain_b1_ms": explain}
    print(f"\nStandardisation steps, one thread, median ms per image (model {model_dir.name}, spec v{spec.version})")
    hdr = f"{'input':14} {'step':24} {'ours':>8} {'OpenCV':>8} {'ours/OpenCV':>12}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in out.items():
        if name == "model":
            continue
        for step in ("locate", "locate_reframe"):
            print(f"{name:14} {step:24} {r['ours_' + step]:8.3f} {r['opencv_' + step]:8.3f} "
                  f"{r['ours_' + step] / r['opencv_' + step]:12.2f}")
        print(f"{name:14} {'whole model spec':24} {r['ours_model_spec']:8.3f}   = {r['ours_model_spec'] / explain:.1%} "
              f"of the bare explain b1 ({explain:.2f} ms)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sk-n", type=int, default=0, help="images for the (slow) scikit-image path; 0 = all")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=None, help="model whose spec and explain time to compare "
                    "(default models/hemovision/<newest>)")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    cores = len(os.sched_getaffinity(0))
    sets = {"128 px": load_images(args.n)}
    sets["360 px"] = upscale(sets["128 px"])
    n = len(sets["128 px"])
    sk_n = args.sk_n or n

    ours_full: Fn = lambda im: preprocess(im, FULL)  # noqa: E731
    ours_basic: Fn = lambda im: preprocess(im, BASIC)  # noqa: E731

    # Same answer first: the three full pipelines must agree on what they compute.
    probe = sets["360 px"][0]
    lv = 1 / (255 * STD[0])
    agree = {
        "ours_vs_opencv_basic_max_levels": float(np.abs(ours_basic(probe) - cv_basic(probe)).max() / lv),
        "ours_vs_opencv_full_mean_levels": float(np.abs(ours_full(probe) - cv_full(probe)).mean() / lv),
        "ours_vs_skimage_full_mean_levels": float(np.abs(ours_full(probe) - sk_full(probe)).mean() / lv),
    }

    rows = []
    results: dict[str, dict[str, float]] = {}
    for name, images in sets.items():
        r = interleaved_medians(
            {"ours_full": ours_full, "opencv_full": cv_full, "ours_basic": ours_basic, "opencv_basic": cv_basic,
             "pillow_basic": sk_basic},
            images,
        )
        r.update(interleaved_medians({"ours_full_": ours_full, "skimage_full": sk_full, "opencv_full_": cv_full},
                                     images[:sk_n]))
        r.update(interleaved_batches(
            {
                "batch_loop_ours_full": lambda ims: np.stack([ours_full(im) for im in ims]),
                "batch_loop_opencv_full": lambda ims: np.stack([cv_full(im) for im in ims]),
                "batch_api_1thread_full": lambda ims: preprocess_batch(ims, FULL, threads=1),
                "batch_api_allcores_full": lambda ims: preprocess_batch(ims, FULL, threads=0),
            },
            images,
        ))
        results[name] = r
        rows.append((name, r))

    print(f"\nhemovision-pixels {hemovision_pixels.__name__} | {platform.processor() or platform.machine()} | "
          f"{cores} usable cores | OpenCV {cv2.__version__} (1 thread) | N = {n} pbc_128 test images"
          + (f" (scikit-image on {sk_n})" if sk_n != n else ""))
    print("\nSingle image, one thread, median ms per image")
    hdr = f"{'input':8} {'pipeline':30} {'ours':>8} {'OpenCV':>8} {'NumPy/PIL/skimage':>18} {'ours/OpenCV':>12} {'skimage/ours':>13}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows:
        print(f"{name:8} {'full (crop,resize,CLAHE-L,norm)':30} {r['ours_full']:8.3f} {r['opencv_full']:8.3f} "
              f"{r['skimage_full']:18.3f} {r['ours_full'] / r['opencv_full']:12.2f} {r['skimage_full'] / r['ours_full_']:12.1f}x")
        print(f"{name:8} {'crop+resize+normalise':30} {r['ours_basic']:8.3f} {r['opencv_basic']:8.3f} "
              f"{r['pillow_basic']:18.3f} {r['ours_basic'] / r['opencv_basic']:12.2f} {r['pillow_basic'] / r['ours_basic']:12.1f}x")
    print(f"\nBatch, full pipeline, ms per image (chunks of {CHUNK} images -> one [50,128,128,3] array; median over chunks)")
    hdr2 = f"{'input':8} {'loop ours':>10} {'loop OpenCV':>12} {'batch 1 thr':>12} {f'batch {cores} thr':>12} {'loop ours / batch all':>22}"
    print(hdr2)
    print("-" * len(hdr2))
    for name, r in rows:
        print(f"{name:8} {r['batch_loop_ours_full']:10.3f} {r['batch_loop_opencv_full']:12.3f} "
              f"{r['batch_api_1thread_full']:12.3f} {r['batch_api_allcores_full']:12.3f} "
              f"{r['batch_loop_ours_full'] / r['batch_api_allcores_full']:21.2f}x")
    print("\nAgreement on one 360 px image (in uint8 levels):", {k: round(v, 3) for k, v in agree.items()})
    external = [hemovision_pixels.decode_image(p.read_bytes())
                for p in sorted((DATA.parent / "external_dev").glob("*/*.png"))]
    std = standardisation({"128 px (PBC)": sets["128 px"], "360 px": sets["360 px"],
                           "300 px (ext.)": external}, args.model or newest_model())
    print(f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n": n, "cores": cores, "results": results, "agreement": agree,
                                          "standardisation": std}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
