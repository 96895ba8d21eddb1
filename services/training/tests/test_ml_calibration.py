"""Calibration maths: temperature scaling, ECE, review threshold, OOD score."""
import numpy as np

from hemovision_training.ml import calibration as cal


def _overconfident_fixture(n=4000, k=8, seed=0):
    """Labels drawn from softmax(base) (so base is calibrated), logits = 4 * base (over-confident)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1.0, (n, k))
    base[np.arange(n), rng.integers(0, k, n)] += 4.0
    p = cal.softmax(base)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return base * 4.0, labels


def test_temperature_scaling_lowers_ece_on_overconfident_logits():
    logits, labels = _overconfident_fixture()
    t = cal.fit_temperature(logits, labels)
    assert 3.0 < t < 5.0
    before = cal.ece(cal.softmax(logits), labels)
    after = cal.ece(cal.softmax(logits, t), labels)
    assert before > 0.05
    assert after < before / 3
    assert cal.nll(logits, labels, t) < cal.nll(logits, labels, 1.0)


def test_temperature_near_one_for_calibrated_logits():
    rng = np.random.default_rng(1)
    n, k = 20000, 8
    logits = rng.normal(0, 2.0, (n, k))
    p = cal.softmax(logits)
    labels = np.array([rng.choice(k, p=row) for row in p])
    assert abs(cal.fit_temperature(logits, labels) - 1.0) < 0.1


def test_ece_perfect_and_worst():
    probs = np.eye(8)[np.arange(16) % 8]
    labels = np.arange(16) % 8
    assert cal.ece(probs, labels) == 0.0
    assert abs(cal.ece(probs, (labels + 1) % 8) - 1.0) < 1e-12


def test_review_threshold_reaches_target_on_accepted():
    logits, labels = _overconfident_fixture()
    probs = cal.softmax(logits, cal.fit_temperature(logits, labels))
    t = cal.review_threshold(probs, labels, 0.995)
    cov, acc = cal.coverage_at(probs, labels, t)
    assert acc >= 0.995
    assert 0.0 < cov < 1.0
    cov_curve, acc_curve = cal.coverage_curve(probs, labels)
    assert acc_curve[0] >= acc_curve[-1]


def test_energy_score_higher_for_flat_logits():
    peaked = np.array([[12.0, 0, 0, 0, 0, 0, 0, 0]])
    flat = np.zeros((1, 8))
    assert cal.energy_score(flat)[0] > cal.energy_score(peaked)[0]
    thr = cal.ood_threshold(np.random.default_rng(0).normal(0, 5, (500, 8)), 99.0)
    assert np.isfinite(thr)
