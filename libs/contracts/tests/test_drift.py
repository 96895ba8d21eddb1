"""The drift score's definition: PSI of smoothed shares, its thresholds, the bins, the reference's shape."""

from __future__ import annotations

import math

import pytest

from hemovision_contracts import CLASS_NAMES, drift


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    assert drift.psi([1000, 2000, 3000], [100, 200, 300]) == pytest.approx(0.0, abs=1e-3)  # only shares count
    small, large = drift.psi([30, 40, 30], [33, 34, 33]), drift.psi([80, 10, 10], [33, 34, 33])
    assert 0 < small < drift.WATCH_THRESHOLD and large > drift.DRIFTING_THRESHOLD
    # an empty bin is smoothed, never infinite
    assert math.isfinite(drift.psi([100, 0], [0, 100]))
    with pytest.raises(ValueError):
        drift.psi([1, 2], [1, 2, 3])


def test_status_thresholds():
    assert [drift.status_of(x) for x in (0.0, 0.099, 0.1, 0.249, 0.25, 3.0)] == [
        "ok", "ok", "watch", "watch", "drifting", "drifting"]


def test_bins_follow_postgresql_width_bucket():
    edges = [0.5, 0.9]
    assert [drift.bucket(x, edges) for x in (0.1, 0.5, 0.7, 0.9, 1.0)] == [0, 1, 1, 2, 2]
    assert drift.histogram([0.1, 0.5, 0.95, 0.99], edges) == [1, 1, 2]


def test_reference_shape_and_validation():
    ood = [float(i) for i in range(100)]
    ref = drift.build_reference(labels=[CLASS_NAMES[i % 8] for i in range(100)], class_names=CLASS_NAMES,
                                confidences=[0.999] * 100, ood_scores=ood, source="test")
    assert drift.validate_reference(ref) is ref and ref["n"] == 100
    assert len(ref["components"]["ood_score"]["edges"]) == drift.OOD_SCORE_BINS - 1
    assert ref["components"]["ood_score"]["counts"] == [10] * 10  # deciles hold a tenth each
    assert sum(ref["components"]["confidence"]["counts"]) == 100
    bad = {**ref, "components": {**ref["components"], "confidence": {"edges": [0.9, 0.5], "counts": [1, 2, 3]}}}
    with pytest.raises(drift.InvalidReference):
        drift.validate_reference(bad)
    with pytest.raises(drift.InvalidReference):
        drift.validate_reference({"format": 99})
    with pytest.raises(drift.InvalidReference):
        drift.validate_reference("not a dict")
