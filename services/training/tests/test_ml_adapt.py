"""The adaptation recipe's pure parts: the hold-back split, the gate and its false-accept rate,
layer freezing by stage, and the model-image <-> tensor round trip."""

from __future__ import annotations

import numpy as np
import pytest

from hemovision_training.ml import adapt


def test_holdout_is_stratified_and_at_least_ten():
    labels = np.array([0] * 3 + [2] * 9 + [4] * 8)  # 20 cells, three classes
    train, held = adapt.holdout_split(labels, share=0.3, seed=1)
    assert len(held) >= adapt.MIN_HOLDOUT and len(train) + len(held) == 20
    assert not set(train) & set(held)
    for c in (0, 2, 4):  # every class with >= 2 cells keeps one on each side
        assert (labels[train] == c).any() and (labels[held] == c).any()
    again = adapt.holdout_split(labels, share=0.3, seed=1)
    assert all((a == b).all() for a, b in zip(again, (train, held)))


def test_fewer_than_twenty_cells_is_refused_with_the_count():
    with pytest.raises(ValueError, match="at least 20 reviewed cells.*has 19"):
        adapt.holdout_split(np.zeros(19, int), share=0.3, seed=0)


def test_sign_test():
    assert adapt.sign_test_p(0, 0) == 1.0
    assert adapt.sign_test_p(5, 0) == pytest.approx(1 / 32)
    assert adapt.sign_test_p(3, 3) > 0.5


def test_gate_accepts_only_a_clearly_better_version_that_keeps_pbc():
    old = np.array([True] * 3 + [False] * 9)
    new = np.array([True] * 9 + [False] * 3)   # 6 wins, 0 losses: p = 1/64
    ok = adapt.gate(old, new, current_pbc_val=0.988, new_pbc_val=0.982)
    assert ok["accepted"] and ok["wins"] == 6 and ok["losses"] == 0
    forgot = adapt.gate(old, new, current_pbc_val=0.988, new_pbc_val=0.970)
    assert not forgot["accepted"] and "PBC val accuracy fell 1.8 points" in forgot["reasons"][0]
    same = adapt.gate(old, old.copy(), current_pbc_val=0.988, new_pbc_val=0.988)
    assert not same["accepted"] and "not better on the held-back cells" in same["reasons"][0]


@pytest.mark.parametrize("holdout", [10, 15])
def test_gate_rarely_accepts_a_version_that_is_not_better(holdout):
    for disagreement in (0.2, 0.5, 1.0):
        assert adapt.gate_false_accept_rate(holdout, disagreement, trials=4000) <= adapt.GATE_ALPHA


def test_stage_of_layers():
    assert adapt._stage("m0_stem_conv") == 0 and adapt._stage("stem2_bn") == 0
    assert adapt._stage("m1_s3b2_a_conv") == 3 and adapt._stage("s4b1_proj_conv") == 4
    assert adapt._stage("m0_logits") > 100


def test_normalise_inverts_model_image():
    import hemovision_pixels as px

    spec = {"version": 1, "input_size": 8, "crop": "center_square", "stain_normalization": None, "clahe": None,
            "blur_sigma": 0.0, "mean": [0.8, 0.7, 0.6], "std": [0.2, 0.1, 0.3]}
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pspec = px.PreprocessSpec.from_dict(spec)
    tensor = px.preprocess(img, pspec)
    assert (px.model_image(tensor, pspec) == img).all()
    assert np.abs(adapt.normalise(img[None], spec)[0] - tensor).max() < 1e-5


def test_interpolation_keeps_the_guard_cells():
    import keras

    spec = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(8)])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (200, 4, 4, 3), dtype=np.uint8)
    labels = adapt.predict_logits(model, adapt.normalise(images, spec)).argmax(1)  # the base is always right
    base = model.get_weights()
    tuned = [w + rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in base]  # a fine-tune that forgot
    model.set_weights(tuned)
    cfg = adapt.AdaptConfig(max_guard_drop=0.02)
    chosen = adapt.interpolate(model, base, (images, labels), spec, cfg)
    a = chosen["mix"]
    assert a in (0.0, *cfg.mixes) and a < 1.0 and chosen["guard_accuracy_base"] == 1.0
    for got, b, t in zip(model.get_weights(), base, tuned):
        assert np.allclose(got, b + a * (t - b), atol=1e-6)
    kept = (adapt.predict_logits(model, adapt.normalise(images, spec)).argmax(1) == labels).mean()
    assert kept >= 1.0 - cfg.max_guard_drop
    # a fine-tune that forgot nothing is kept whole
    model.set_weights(base)
    assert adapt.interpolate(model, base, (images, labels), spec, cfg)["mix"] == 1.0
