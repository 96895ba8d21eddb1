"""Fits services/inference/src/hemovision_inference/ood_reference.json: the input plausibility
reference (hemovision_inference.input_check) on the PBC train split, threshold on the val split,
through the C++ pipeline with the model's preprocessing spec. The file keeps one reference per pixel
pipeline: fitting for a new spec adds its reference and leaves the other versions' references alone.

    python bench/ood/fit_input_reference.py [--model models/hemovision/1] [--limit 4000]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "pbc_128"


def main() -> None:
    import hemovision_pixels as px

    from hemovision_inference import input_check
    from hemovision_training.ml.lab_augment import augment_image

    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--limit", type=int, default=6000, help="training images (random subset)")
    parser.add_argument("--lab-augment", type=int, default=0, metavar="N",
                        help="also fit on N lab-augmented versions of each training image (training's own "
                             "lab_augment, as the model learned): other labs' cells stay plausible inputs")
    args = parser.parse_args()
    base = REPO / "models" / "hemovision"
    model = Path(args.model) if args.model else base / str(max(int(p.name) for p in base.iterdir() if p.name.isdigit()))
    pre = json.loads((model / "assets.extra" / "hemovision.json").read_text())["preprocessing"]
    spec = px.PreprocessSpec.from_dict(pre)
    rows = list(csv.DictReader(open(DATA / "splits.csv")))
    rng = np.random.default_rng(0)

    def feats(split: str, limit: int, augment: int = 0) -> np.ndarray:
        paths = [DATA / r["path"] for r in rows if r["split"] == split]
        if limit and len(paths) > limit:
            paths = [paths[i] for i in rng.choice(len(paths), limit, replace=False)]
        out = []
        for i in range(0, len(paths), 256):
            imgs = [px.decode_image(p.read_bytes()) for p in paths[i : i + 256]]
            imgs += [augment_image(im, rng) for _ in range(augment) for im in imgs]
            out.append(input_check.features(px.preprocess_batch(imgs, spec, threads=2), pre["mean"], pre["std"]))
        return np.concatenate(out)

    reference = input_check.fit(feats("train", args.limit, args.lab_augment), feats("val", 0), pre)
    reference["lab_augmented_copies"] = args.lab_augment
    existing = json.loads(input_check.REFERENCE_FILE.read_text()) if input_check.REFERENCE_FILE.is_file() else None
    # one reference per pixel pipeline: older versions keep theirs
    input_check.REFERENCE_FILE.write_text(json.dumps(input_check.merged(existing, reference), indent=1))
    print(f"written {input_check.REFERENCE_FILE}: threshold {reference['threshold']:.2f} "
          f"(n_train {reference['n_train']}, n_val {reference['n_val']})")


if __name__ == "__main__":
    main()
