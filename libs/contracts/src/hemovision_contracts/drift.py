"""Drift: how an organization's recent cells compare with the cells a model version was checked on.

Defined once here because two services meet on it: training writes a version's *reference*
(histograms over PBC val, at export or registration) and history compares an organization's recent
predictions with it (docs/operations.md "Drift"). Standard library only.

A reference (JSON, `hemovision.json["drift_reference"]` or `assets.extra/drift_reference.json`):

    {"format": 1, "source": "PBC val (1711 cells)", "n": 1711,
     "components": {
        "class_mix":  {"labels": [...CLASS_NAMES], "counts": [...]},
        "confidence": {"edges": [...], "counts": [...]},     # top-class calibrated probability
        "ood_score":  {"edges": [...], "counts": [...]}}}    # the version's own ood_score

`edges` are the inner bin boundaries, ascending: bin i holds edges[i-1] <= x < edges[i] (bin 0
everything below edges[0], the last bin everything from edges[-1] up), which is PostgreSQL's
`width_bucket(x, edges)` exactly. The ood_score edges are the reference's own deciles, so each of
its bins holds ~10 % of PBC val: the score then measures how the live mass moved between them.

The score of one component is the population stability index (PSI) between the live and the
reference histogram, each smoothed with half a count per bin (an empty bin never gives infinity):
    PSI = sum_i (p_i - q_i) * ln(p_i / q_i)
Usual reading, kept here: < 0.10 no change worth a look, 0.10-0.25 watch, >= 0.25 drifting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

REFERENCE_FORMAT = 1
# Components in the order they are reported. class_mix is shown but does not drive the overall
# status: a lab's differential legitimately differs from PBC's (which is not a patient mix).
COMPONENTS: tuple[str, ...] = ("ood_score", "confidence", "class_mix")
OVERALL_COMPONENTS: tuple[str, ...] = ("ood_score", "confidence")

# Top-class confidence bins: most PBC cells sit above 0.99, so the bins are finest there.
CONFIDENCE_EDGES: tuple[float, ...] = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
OOD_SCORE_BINS = 10  # deciles of the reference

# Thresholds on the PSI (the score): below WATCH "ok", below DRIFTING "watch", else "drifting".
WATCH_THRESHOLD = 0.10
DRIFTING_THRESHOLD = 0.25
# Fewer cells than this in the window: no score (sampling noise alone would reach "watch").
MIN_CELLS = 200
# The live window: the last WINDOW_DAYS days, at most the newest WINDOW_MAX_CELLS cells.
WINDOW_DAYS = 7
WINDOW_MAX_CELLS = 5000

OK, WATCH, DRIFTING, TOO_FEW, NO_REFERENCE = "ok", "watch", "drifting", "too_few_cells", "no_reference"

# Where training publishes a version's reference and history reads it (Redis, no expiry; training
# re-publishes every registered version's at start-up, so a flushed Redis heals itself).
REFERENCE_KEY_PREFIX = "hv:drift:reference:"


def reference_key(model_name: str, version: int) -> str:
    return f"{REFERENCE_KEY_PREFIX}{model_name}:{int(version)}"

_SMOOTHING = 0.5


class InvalidReference(ValueError):
    """A drift reference that does not have the documented shape."""


def psi(live: Sequence[float], reference: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins (counts, any scale)."""
    if len(live) != len(reference) or not live:
        raise ValueError("histograms must have the same, non-zero number of bins")
    k = len(live)
    lt = sum(live) + _SMOOTHING * k
    rt = sum(reference) + _SMOOTHING * k
    total = 0.0
    for a, b in zip(live, reference):
        p = (a + _SMOOTHING) / lt
        q = (b + _SMOOTHING) / rt
        total += (p - q) * math.log(p / q)
    return max(total, 0.0)


def status_of(score: float) -> str:
    if score >= DRIFTING_THRESHOLD:
        return DRIFTING
    if score >= WATCH_THRESHOLD:
        return WATCH
    return OK


def bucket(value: float, edges: Sequence[float]) -> int:
    """The bin of `value` (PostgreSQL width_bucket(value, edges) semantics)."""
    i = 0
    while i < len(edges) and value >= edges[i]:
        i += 1
    return i


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[bucket(float(v), edges)] += 1
    return counts


def quantile_edges(values: Sequence[float], bins: int) -> list[float]:
    """Inner edges at the 1/bins .. (bins-1)/bins quantiles, duplicates dropped (ascending)."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("no values")
    edges: list[float] = []
    for j in range(1, bins):
        pos = j * (len(xs) - 1) / bins
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(xs) - 1)
        e = xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
        if not edges or e > edges[-1]:
            edges.append(e)
    return edges


def build_reference(*, labels: Sequence[str], class_names: Sequence[str], confidences: Sequence[float],
                    ood_scores: Sequence[float], source: str) -> dict[str, Any]:
    """The reference of one version from its predictions on the reference split."""
    n = len(labels)
    if n == 0 or len(confidences) != n or len(ood_scores) != n:
        raise ValueError("labels, confidences and ood_scores must be non-empty and of one length")
    index = {c: i for i, c in enumerate(class_names)}
    mix = [0] * len(class_names)
    for lab in labels:
        mix[index[lab]] += 1
    ood_edges = quantile_edges(ood_scores, OOD_SCORE_BINS)
    return {
        "format": REFERENCE_FORMAT,
        "source": source,
        "n": n,
        "components": {
            "class_mix": {"labels": list(class_names), "counts": mix},
            "confidence": {"edges": list(CONFIDENCE_EDGES), "counts": histogram(confidences, CONFIDENCE_EDGES)},
            "ood_score": {"edges": [round(e, 6) for e in ood_edges],
                          "counts": histogram(ood_scores, [round(e, 6) for e in ood_edges])},
        },
    }


def validate_reference(ref: Any) -> dict[str, Any]:
    """`ref` if it has the documented shape, else InvalidReference."""
    try:
        if ref.get("format") != REFERENCE_FORMAT:
            raise InvalidReference(f"unknown drift reference format {ref.get('format')!r}")
        comps = ref["components"]
        mix = comps["class_mix"]
        if len(mix["labels"]) != len(mix["counts"]) or not mix["labels"]:
            raise InvalidReference("class_mix: labels and counts differ in length")
        for name in ("confidence", "ood_score"):
            c = comps[name]
            edges = [float(e) for e in c["edges"]]
            if len(c["counts"]) != len(edges) + 1 or any(b <= a for a, b in zip(edges, edges[1:])):
                raise InvalidReference(f"{name}: counts must be len(edges)+1 and edges ascending")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidReference):
            raise
        raise InvalidReference(f"not a drift reference: {exc}") from exc
    return ref


def score_components(reference: Mapping[str, Any], live: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """PSI per component; `live` holds the live counts per component over the reference's bins
    (class_mix in the reference's label order)."""
    comps = reference["components"]
    return {name: psi(live[name], comps[name]["counts"]) for name in COMPONENTS}


def overall(scores: Mapping[str, float]) -> float:
    return max(scores[c] for c in OVERALL_COMPONENTS)
