"""Fits services/inference/src/hemovision_inference/ood_reference.json: the input plausibility
reference (hemovision_inference.input_check) on the PBC train split, threshold on the val split,
through the C++ pipeline with the shipped model's preprocessing spec.

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

    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--limit", type=int, default=6000, help="training images (random subset)")
    args = parser.parse_args()
    base = REPO / "models" / "hemovision"
    model = Path(args.model) if args.model else base / str(max(int(p.name) for p in base.iterdir() if p.name.isdigit()))
    pre = json.loads((model / "assets.extra" / "hemovision.json").read_text())["preprocessing"]
    spec = px.PreprocessSpec.from_dict(pre)
    rows = list(csv.DictReader(open(DATA / "splits.csv")))
    rng = np.random.default_rng(0)

    def feats(split: str, limit: int) -> np.ndarray:
        paths = [DATA / r["path"] for r in rows if r["split"] == split]
        if limit and len(paths) > limit:
            paths = [paths[i] for i in rng.choice(len(paths), limit, replace=False)]
        out = []
        for i in range(0, len(paths), 256):
            imgs = [px.decode_image(p.read_bytes()) for p in paths[i : i + 256]]
            out.append(input_check.features(px.preprocess_batch(imgs, spec, threads=2), pre["mean"], pre["std"]))
        return np.concatenate(out)

    reference = input_check.fit(feats("train", args.limit), feats("val", 0), pre)
    input_check.REFERENCE_FILE.write_text(json.dumps(reference, indent=1))
    print(f"written {input_check.REFERENCE_FILE}: threshold {reference['threshold']:.2f} "
          f"(n_train {reference['n_train']}, n_val {reference['n_val']})")


if __name__ == "__main__":
    main()
