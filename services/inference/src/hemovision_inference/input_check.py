"""A model-independent plausibility check of model-ready tensors: "does this look like a stained
blood-cell crop at all?".

The model's own `ood_score` (energy, -logsumexp(logits)) is part of the export contract, but on
the models trained so far it is inverted on far-OOD input (noise and photos get *larger* logits
than cells; bench/ood/eval_ood.py). This check backs it up: 13 colour / contrast / sharpness
statistics of the image (undone to [0,1] RGB with the version's mean/std), scored as a
Mahalanobis distance to the PBC training distribution; the threshold is a high percentile of
the validation split. The reference (ood_reference.json, fitted by bench/ood/fit_input_reference.py)
records the pixel pipeline it was fitted with; it is applied only to versions whose input size, crop,
standardisation (locate, white balance), stain normalisation, CLAHE and blur match (other versions
fall back to the model's score alone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_FILE = Path(__file__).with_name("ood_reference.json")
FEATURE_NAMES = [
    "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "saturation", "center_minus_border",
    "log_sharpness", "bright_fraction", "stain_fraction", "gray_p10", "gray_p90",
]
_SPEC_KEYS = ("input_size", "crop", "locate", "white_balance", "stain_normalization", "clahe", "blur_sigma")


def features(images: np.ndarray, mean, std) -> np.ndarray:
    """[N,S,S,3] model-ready float32 -> [N,13] statistics of the [0,1] RGB image behind it.

    Every reduction runs over the last, contiguous axis (channel planes first): reductions over
    strided axes of these small arrays cost several times as much, on the path of every request
    (docs/serving.md "Benchmarks")."""
    rgb = np.clip(images * np.asarray(std, np.float32) + np.asarray(mean, np.float32), 0.0, 1.0)
    n, s = rgb.shape[0], rgb.shape[1]
    planes = np.ascontiguousarray(np.moveaxis(rgb, -1, 1))  # [N,3,S,S]
    r, g, b = planes[:, 0], planes[:, 1], planes[:, 2]
    channels = planes.reshape(n, 3, -1)
    gray = (r + g + b) / 3.0  # [N,S,S]
    gray_flat = gray.reshape(n, -1)
    q = s // 4
    inner = np.ascontiguousarray(gray[:, q : s - q, q : s - q]).reshape(n, -1).sum(axis=1)
    total = gray_flat.sum(axis=1)
    center = inner / ((s - 2 * q) ** 2)
    border = (total - inner) / (s * s - (s - 2 * q) ** 2)
    dx = np.abs(np.diff(gray, axis=2)).reshape(n, -1).mean(axis=1)
    dy = np.abs(np.diff(gray, axis=1)).reshape(n, -1).mean(axis=1)
    saturation = (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).reshape(n, -1).mean(axis=1)
    stain = ((b > g + 0.08) & (r > g + 0.03)).reshape(n, -1).mean(axis=1)
    p10, p90 = np.percentile(gray_flat, [10, 90], axis=1)
    return np.column_stack(
        [
            channels.mean(axis=2),
            channels.std(axis=2),
            saturation,
            center - border,
            np.log(dx + dy + 1e-4),
            (gray_flat > 0.8).mean(axis=1),
            stain,
            p10,
            p90,
        ]
    ).astype(np.float64)


@dataclass(frozen=True)
class InputReference:
    mean: np.ndarray
    precision: np.ndarray  # inverse covariance
    threshold: float
    spec: dict

    @classmethod
    def from_dict(cls, raw: dict) -> InputReference:
        return cls(np.asarray(raw["mean"]), np.asarray(raw["precision"]), float(raw["threshold"]), raw["spec"])

    @classmethod
    def load(cls, path: Path = REFERENCE_FILE) -> InputReferences | None:
        """Every reference in the file (one per pixel pipeline), or None when there is no file."""
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        return InputReferences([cls.from_dict(r) for r in raw.get("references", [raw])])

    def applies_to(self, preprocessing: dict) -> bool:
        return all(_norm(preprocessing.get(k)) == _norm(self.spec.get(k)) for k in _SPEC_KEYS)

    def distance(self, images: np.ndarray, mean, std) -> np.ndarray:
        d = features(images, mean, std) - self.mean
        return np.sqrt(np.einsum("ni,ij,nj->n", d, self.precision, d))


@dataclass(frozen=True)
class InputReferences:
    """The references fitted so far, one per pixel pipeline (a version's spec picks its own)."""

    references: list[InputReference]

    def for_spec(self, preprocessing: dict) -> InputReference | None:
        return next((r for r in self.references if r.applies_to(preprocessing)), None)


def merged(existing: dict | None, reference: dict) -> dict:
    """The reference file with `reference` added, replacing one fitted for the same pipeline."""
    refs = [] if existing is None else existing.get("references", [existing])
    keep = [r for r in refs if not InputReference.from_dict(r).applies_to(reference["spec"])]
    return {"references": keep + [reference]}


def fit(train: np.ndarray, val: np.ndarray, spec: dict, percentile: float = 99.5) -> dict:
    """Reference from training-split features; threshold at `percentile` of the validation split."""
    mu = train.mean(axis=0)
    cov = np.cov(train, rowvar=False) + np.eye(train.shape[1]) * 1e-6
    precision = np.linalg.inv(cov)
    d = val - mu
    distances = np.sqrt(np.einsum("ni,ij,nj->n", d, precision, d))
    return {
        "features": FEATURE_NAMES,
        "mean": mu.tolist(),
        "precision": precision.tolist(),
        "threshold": float(np.percentile(distances, percentile)),
        "percentile": percentile,
        "spec": {k: spec.get(k) for k in _SPEC_KEYS},
        "n_train": int(len(train)),
        "n_val": int(len(val)),
    }


def _norm(value):
    if value in (None, 0, 0.0, {}):
        return None
    return json.dumps(value, sort_keys=True)
