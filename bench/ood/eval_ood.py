"""How well needs_review catches inputs that are not blood cells (make bench-ood / python bench/ood/eval_ood.py).

In-distribution: the PBC test split (../shared/data/pbc_128, splits.csv). Everything goes
through the same C++ preprocessing as serving (hemovision_pixels.decode_image + preprocess with
the model's own spec) and the shipped model's compiled `serving_default` signature.
  far OOD : scikit-image's bundled sample images (random crops), uniform and Gaussian noise
  near OOD: PBC test cells heavily blurred, empty background crops, strongly stain-shifted
Reports per set: AUROC of the model's ood_score (energy) and of 1 - max softmax, and the share
flagged (OOD reason / any review reason) at the shipped thresholds; and the false-flag rate on
the PBC test split. Writes bench/ood/last_run.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "pbc_128"


def latest_model() -> Path:
    base = REPO / "models" / "hemovision"
    return base / str(max(int(p.name) for p in base.iterdir() if p.name.isdigit()))


def encode(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def far_ood(rng: np.random.Generator, n_noise: int) -> dict[str, list[np.ndarray]]:
    from skimage import data

    names = ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "horse",
             "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "grass", "gravel", "brick",
             "colorwheel", "logo", "retina", "cat", "clock", "binary_blobs"]
    samples = []
    for name in names:
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - some need pooch downloads; skip those
            continue
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.dtype != np.uint8:
            img = (255 * (img - img.min()) / max(1e-6, float(img.max() - img.min()))).astype(np.uint8)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[..., :3]
        samples.append(np.ascontiguousarray(img))
        h, w = img.shape[:2]
        for _ in range(9):  # random square crops at random scales
            side = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            samples.append(np.ascontiguousarray(img[y : y + side, x : x + side]))
    uniform = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(n_noise)]
    gaussian = [np.clip(rng.normal(128, 50, (128, 128, 3)), 0, 255).astype(np.uint8) for _ in range(n_noise)]
    return {"far: skimage samples": samples, "far: uniform noise": uniform, "far: gaussian noise": gaussian}


def near_ood(cells: list[np.ndarray], rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    blurred, background, stained = [], [], []
    for img in cells:
        blurred.append(np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=8))))
        h, w = img.shape[:2]
        # 24 px corner patches (the cell sits in the centre of PBC crops), upscaled by the pipeline
        corner = [(0, 0), (0, w - 24), (h - 24, 0), (h - 24, w - 24)][int(rng.integers(0, 4))]
        background.append(np.ascontiguousarray(img[corner[0] : corner[0] + 24, corner[1] : corner[1] + 24]))
        # strong stain shift: channel permutation + gain (purple -> green/yellow)
        shifted = img[..., [1, 2, 0]].astype(np.float32) * np.array([1.15, 1.2, 0.6])
        stained.append(np.clip(shifted, 0, 255).astype(np.uint8))
    return {"near: heavy blur": blurred, "near: empty background": background, "near: stain shift": stained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="SavedModel version dir (default models/hemovision/<highest>)")
    parser.add_argument("--limit", type=int, default=0, help="PBC test images to use (0 = all)")
    parser.add_argument("--near", type=int, default=400, help="PBC cells per near-OOD set")
    parser.add_argument("--noise", type=int, default=200, help="images per noise set")
    args = parser.parse_args()

    import hemovision_pixels as px
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    tf.config.threading.set_intra_op_parallelism_threads(2)
    model_dir = Path(args.model) if args.model else latest_model()
    meta = json.loads((model_dir / "assets.extra" / "hemovision.json").read_text())
    spec = px.PreprocessSpec.from_dict(meta["preprocessing"])
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    ood_t, review_t = float(meta["ood_threshold"]), float(meta["review_threshold"])

    from hemovision_inference.input_check import InputReference

    refs = InputReference.load()
    pre = meta["preprocessing"]
    reference = refs.for_spec(pre) if refs is not None else None
    use_check = reference is not None

    def score(rgb_images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ood_score, max probability and input-check distance, via decode_image (PNG bytes) + C++ preprocess."""
        ood, conf, dist = [], [], []
        for i in range(0, len(rgb_images), 64):
            chunk = [px.decode_image(encode(img)) for img in rgb_images[i : i + 64]]
            x = px.preprocess_batch(chunk, spec, threads=2)
            out = fn(image=tf.constant(x))
            ood.append(out["ood_score"].numpy())
            conf.append(out["probabilities"].numpy().max(axis=1))
            dist.append(reference.distance(x, pre["mean"], pre["std"]) if use_check else np.zeros(len(x)))
        return np.concatenate(ood), np.concatenate(conf), np.concatenate(dist)

    rows = [r for r in csv.DictReader(open(DATA / "splits.csv")) if r["split"] == "test"]
    if args.limit:
        rows = rows[: args.limit]
    started = time.time()
    test_rgb = [px.decode_image((DATA / r["path"]).read_bytes()) for r in rows]
    id_ood, id_conf, id_dist = score(test_rgb)
    check_t = reference.threshold if use_check else float("inf")

    def flags(ood, conf, dist):
        out_of_dist = (ood > ood_t) | (dist > check_t)
        return out_of_dist, out_of_dist | (conf < review_t)

    rng = np.random.default_rng(0)
    pick = rng.choice(len(test_rgb), size=min(args.near, len(test_rgb)), replace=False)
    sets = {**far_ood(rng, args.noise), **near_ood([test_rgb[i] for i in pick], rng)}

    result = {
        "model": str(model_dir),
        "ood_threshold": ood_t,
        "review_threshold": review_t,
        "input_check": {"applied": use_check, "threshold": None if not use_check else check_t},
        "pbc_test": {
            "n": len(rows),
            "false_flag_model_ood": float(np.mean(id_ood > ood_t)),
            "false_flag_input_check": float(np.mean(id_dist > check_t)),
            "false_flag_ood": float(np.mean(flags(id_ood, id_conf, id_dist)[0])),
            "false_flag_any": float(np.mean(flags(id_ood, id_conf, id_dist)[1])),
        },
        "sets": {},
    }
    for name, images in sets.items():
        ood, conf, dist = score(images)
        labels = np.r_[np.zeros(len(id_ood)), np.ones(len(ood))]
        flagged_ood, flagged_any = flags(ood, conf, dist)
        result["sets"][name] = {
            "n": len(images),
            "auroc_energy": float(roc_auc_score(labels, np.r_[id_ood, ood])),
            "auroc_msp": float(roc_auc_score(labels, np.r_[1 - id_conf, 1 - conf])),
            "auroc_input_check": float(roc_auc_score(labels, np.r_[id_dist, dist])) if use_check else None,
            "flagged_model_ood": float(np.mean(ood > ood_t)),
            "flagged_ood": float(np.mean(flagged_ood)),
            "flagged_any": float(np.mean(flagged_any)),
        }
    result["seconds"] = round(time.time() - started, 1)

    print(f"model {model_dir}; ood_threshold {ood_t:.3f}, review_threshold {review_t:.3f}")
    p = result["pbc_test"]
    print(f"input check applied: {use_check} (threshold {check_t:.2f})")
    print(
        f"PBC test split (n={p['n']}): false-flag rate model OOD {p['false_flag_model_ood']:.1%}, input check "
        f"{p['false_flag_input_check']:.1%}, OOD reason {p['false_flag_ood']:.1%}, any review reason {p['false_flag_any']:.1%}"
    )
    print(f"{'set':26} {'n':>5} {'AUROC energy':>13} {'AUROC 1-MSP':>12} {'AUROC input':>12} {'flag model':>11} {'flag OOD':>9} {'flag any':>9}")
    for name, r in result["sets"].items():
        auroc_in = r["auroc_input_check"] if r["auroc_input_check"] is not None else float("nan")
        print(f"{name:26} {r['n']:5d} {r['auroc_energy']:13.3f} {r['auroc_msp']:12.3f} {auroc_in:12.3f} "
              f"{r['flagged_model_ood']:11.1%} {r['flagged_ood']:9.1%} {r['flagged_any']:9.1%}")
    out = Path(__file__).with_name("last_run.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
