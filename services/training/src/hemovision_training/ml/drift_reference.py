"""A model version's drift reference: what its answers look like on PBC val.

The histograms of class mix, top-class confidence and ood_score that history compares an
organization's recent predictions with (hemovision_contracts.drift, docs/operations.md "Drift").

- At export (`export_model(..., drift_reference=...)`) it is computed from the val logits the
  calibration already has (probabilities = softmax(logits / T), ood_score = -logsumexp(logits):
  exactly the SavedModel's outputs) and written into hemovision.json under "drift_reference".
- A version exported before that (the shipped v1) gets it at registration: `ensure_reference` runs
  PBC val through the version's own preprocessing spec (C++ pipeline) and `serving_default`, and
  writes `assets.extra/drift_reference.json` beside hemovision.json (atomically).

    python -m hemovision_training.ml.drift_reference --model models/hemovision/1 --data ../shared/data/pbc_128
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hemovision_contracts import drift

from . import calibration as cal
from .data import CLASS_NAMES

METADATA_FILE = "hemovision.json"
SIDECAR_FILE = "drift_reference.json"
REFERENCE_KEY = "drift_reference"


def reference_from_outputs(probabilities: np.ndarray, ood_scores: np.ndarray, *,
                           class_names: list[str] | tuple[str, ...] = CLASS_NAMES, source: str) -> dict[str, Any]:
    probabilities = np.asarray(probabilities, np.float64)
    return drift.build_reference(
        labels=[class_names[i] for i in probabilities.argmax(1)], class_names=list(class_names),
        confidences=probabilities.max(1).tolist(), ood_scores=np.asarray(ood_scores, np.float64).tolist(),
        source=source)


def reference_from_logits(logits: np.ndarray, temperature: float, *, source: str) -> dict[str, Any]:
    """The reference from raw logits: the SavedModel's probabilities and ood_score, computed here."""
    return reference_from_outputs(cal.softmax(logits, temperature), cal.energy_score(logits), source=source)


def read_reference(version_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The version's reference (hemovision.json first, then the sidecar), or None."""
    extra = Path(version_dir) / "assets.extra"
    try:
        meta = json.loads((extra / METADATA_FILE).read_text())
        if isinstance(meta.get(REFERENCE_KEY), dict):
            return drift.validate_reference(meta[REFERENCE_KEY])
    except (OSError, ValueError):
        pass
    try:
        return drift.validate_reference(json.loads((extra / SIDECAR_FILE).read_text()))
    except (OSError, ValueError):
        return None


def serving_function(version_dir: str | os.PathLike) -> Any:
    import tensorflow as tf

    return tf.saved_model.load(str(version_dir)).signatures["serving_default"]


def model_outputs(version_dir: str | os.PathLike, images: list[np.ndarray], *, fn: Any = None,
                  batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [N, K], ood_score [N]) of decoded uint8 images, the way serving computes them:
    the version's preprocessing spec through the C++ pipeline, then its `serving_default`."""
    import tensorflow as tf

    from .data import preprocess_images

    meta = json.loads((Path(version_dir) / "assets.extra" / METADATA_FILE).read_text())
    fn = fn if fn is not None else serving_function(version_dir)
    probs, ood = [], []
    for i in range(0, len(images), batch_size):
        x = preprocess_images(images[i:i + batch_size], meta["preprocessing"])
        out = fn(image=tf.constant(x))
        probs.append(out["probabilities"].numpy())
        ood.append(out["ood_score"].numpy())
    return np.concatenate(probs), np.concatenate(ood)


def split_images(data_dir: str | os.PathLike, split: str = "val",
                 transform: Callable[[np.ndarray, int], np.ndarray] | None = None) -> list[np.ndarray]:
    """Every image of a PBC split, decoded (optionally transformed: image, index -> image)."""
    from .data import decode_files, load_index

    records = [r for r in load_index(data_dir, check_files=False) if r.split == split]
    images = decode_files(data_dir, records)
    return [transform(im, i) for i, im in enumerate(images)] if transform else images


def compute_reference(version_dir: str | os.PathLike, data_dir: str | os.PathLike) -> dict[str, Any]:
    meta = json.loads((Path(version_dir) / "assets.extra" / METADATA_FILE).read_text())
    fn = serving_function(version_dir)  # first: a version that does not load fails before decoding
    images = split_images(data_dir, "val")
    probs, ood = model_outputs(version_dir, images, fn=fn)
    return reference_from_outputs(probs, ood, class_names=meta.get("class_names") or CLASS_NAMES,
                                  source=f"PBC val ({len(images)} cells), computed at registration")


def write_sidecar(version_dir: str | os.PathLike, reference: dict[str, Any]) -> Path:
    extra = Path(version_dir) / "assets.extra"
    target = extra / SIDECAR_FILE
    fd, tmp = tempfile.mkstemp(dir=extra, prefix=".drift-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(drift.validate_reference(reference), indent=1, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def ensure_reference(version_dir: str | os.PathLike, data_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """The version's reference; computed from PBC val and written as the sidecar when it has none
    (None when it has none and no data folder is given)."""
    ref = read_reference(version_dir)
    if ref is not None or data_dir is None or not Path(data_dir, "splits.csv").is_file():
        return ref
    ref = compute_reference(version_dir, data_dir)
    write_sidecar(version_dir, ref)
    return ref


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a version directory, e.g. models/hemovision/1")
    p.add_argument("--data", required=True, help="the PBC folder with splits.csv")
    p.add_argument("--force", action="store_true", help="recompute even if the version has one")
    args = p.parse_args(argv)
    if args.force:
        ref = compute_reference(args.model, args.data)
        write_sidecar(args.model, ref)
    else:
        ref = ensure_reference(args.model, args.data)
    print(json.dumps({"n": ref["n"] if ref else 0, "source": ref["source"] if ref else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
