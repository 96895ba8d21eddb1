"""The spec's nucleus stain check (hemovision_pixels.StainCheckSpec), fitted on PBC.

reference_od = the train split's median nucleus optical density (per channel, relative to each
slide's own white); max_distance = the `percentile` of the val split's distances to it, so
about (100 - percentile) % of clean PBC cells are flagged stain_unusual.

    python -m hemovision_training.ml.stain_check --data ../shared/data/pbc_128 --model models/hemovision/2

adds the check to an exported version's spec (hemovision.json); the check only flags, so the
tensors -- and the version's answers -- are unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def nucleus_ods(images: Sequence[np.ndarray], spec_dict: dict[str, Any]) -> np.ndarray:
    """[N, 3] nucleus optical densities of the images where a cell was found."""
    from hemovision_pixels import PreprocessSpec, preprocess_with_info

    spec = PreprocessSpec.from_dict({**spec_dict, "stain_check": None})
    ods = []
    for im in images:
        _, info = preprocess_with_info(im, spec)
        if info.cell_found:
            ods.append(info.nucleus_od())
    return np.asarray(ods, np.float64).reshape(-1, 3)


def fit(train: Sequence[np.ndarray], val: Sequence[np.ndarray], spec_dict: dict[str, Any], *,
        percentile: float = 99.5) -> dict[str, Any]:
    ref = np.median(nucleus_ods(train, spec_dict), axis=0)
    dist = np.linalg.norm(nucleus_ods(val, spec_dict) - ref, axis=1)
    return {"reference_od": [round(float(v), 4) for v in ref],
            "max_distance": round(float(np.percentile(dist, percentile)), 4)}


def main(argv: list[str] | None = None) -> int:
    from .data import decode_files, load_index

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="exported version dir (its spec must have locate)")
    p.add_argument("--percentile", type=float, default=99.5)
    p.add_argument("--limit-per-class", type=int, help="at most this many images per class and split (quick runs)")
    a = p.parse_args(argv)
    meta_path = Path(a.model) / "assets.extra" / "hemovision.json"
    meta = json.loads(meta_path.read_text())
    spec = meta["preprocessing"]
    if not spec.get("locate"):
        raise SystemExit("this version's spec has no locate step: the stain check measures the located nucleus")
    records = load_index(a.data, limit_per_class=a.limit_per_class)
    images = {s: decode_files(a.data, [r for r in records if r.split == s]) for s in ("train", "val")}
    check = fit(images["train"], images["val"], spec, percentile=a.percentile)
    meta["preprocessing"] = {**spec, "stain_check": check}
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, meta_path)
    print(json.dumps(check))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
