"""Ensembles: one flat graph whose logits are the mean of its members', loadable from run folders
and from exported single-model versions, exported with a Grad-CAM over every member's map."""
import json

import numpy as np
import pytest
import tensorflow as tf

from hemovision_training.ml import ensemble, export as export_mod
from hemovision_training.ml.data import base_spec_dict
from hemovision_training.ml.model import build_ensemble, build_model, load_member_weights, member_prefix

SIZE = 32
A = {"widths": [8, 16], "blocks": [1, 1], "stem_width": 0, "dropout": 0.1}
B = {"widths": [6, 12], "blocks": [1, 1], "stem_width": 4, "dropout": 0.1}
KW = dict(spec=base_spec_dict(SIZE, [0.5] * 3, [0.2] * 3), temperature=1.3, review_threshold=0.9,
          ood_threshold=-5.0, metrics={"test": {}, "val": {}}, data_hash="sha256:x")


def _member(cfg, seed):
    import keras
    keras.utils.set_random_seed(seed)
    return build_model(SIZE, **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})


def _x(n=3):
    return np.random.default_rng(0).normal(size=(n, SIZE, SIZE, 3)).astype("float32")


def test_ensemble_logits_are_the_mean_of_the_members():
    a, b = _member(A, 1), _member(B, 2)
    ens = build_ensemble([A, B], input_size=SIZE)
    load_member_weights(ens, 0, a)
    load_member_weights(ens, 1, b)
    x = _x()
    want = (a(x, training=False).numpy() + b(x, training=False).numpy()) / 2
    np.testing.assert_allclose(ens(x, training=False).numpy(), want, atol=1e-5)
    assert ens.get_layer(member_prefix(1) + "features") is not None


def test_members_from_a_run_folder_and_an_exported_version(tmp_path):
    a, b = _member(A, 3), _member(B, 4)
    # member A as an exported single-model version (weights come back out of the SavedModel)
    version = export_mod.export_model(a, model_base=tmp_path / "models", training_info={"recipe": {**A, "seed": 3}},
                                      **KW)
    # member B as a training run folder
    run = tmp_path / "run_b"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**B, "input_size": SIZE, "seed": 4}))
    (run / "state.json").write_text(json.dumps({"epoch": 2, "best_epoch": 2, "seconds": 1.5}))
    b.save_weights(run / "checkpoints" / "best.weights.h5")

    ens, members, _singles = ensemble.build([str(version), str(run)])
    x = _x()
    want = (a(x, training=False).numpy() + b(x, training=False).numpy()) / 2
    np.testing.assert_allclose(ens(x, training=False).numpy(), want, atol=1e-5)
    assert [m["config"]["widths"] for m in members] == [A["widths"], B["widths"]]
    assert members[1]["epochs"] == 2

    # an ensemble version cannot itself be a member (its recipe lists members)
    out = export_mod.export_model(ens, model_base=tmp_path / "models", training_info={"recipe": {"members": members}},
                                  gradcam_layer="m0_features,m1_features", **KW)
    with pytest.raises(ValueError, match="already an ensemble"):
        ensemble.load_member(out)

    # the exported ensemble: calibrated probabilities of the mean logits, Grad-CAM from both members
    loaded = tf.saved_model.load(str(out))
    served = loaded.signatures["serving_default"](image=tf.constant(x))
    np.testing.assert_allclose(served["logits"].numpy(), want, atol=1e-4)
    expected = tf.nn.softmax(want / 1.3).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    explained = loaded.signatures["explain"](image=tf.constant(x))
    heat = explained["heatmap"].numpy()
    assert heat.shape == (3, SIZE, SIZE) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert export_mod.read_metadata(out)["gradcam_layer"] == "m0_features,m1_features"


def test_members_must_agree_on_input_size(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**A, "input_size": 48}))
    build_model(48, **{k: tuple(v) if isinstance(v, list) else v for k, v in A.items()}).save_weights(
        run / "checkpoints" / "best.weights.h5")
    run2 = tmp_path / "r2"
    (run2 / "checkpoints").mkdir(parents=True)
    (run2 / "config.json").write_text(json.dumps({**A, "input_size": SIZE}))
    _member(A, 5).save_weights(run2 / "checkpoints" / "best.weights.h5")
    with pytest.raises(ValueError, match="input size"):
        ensemble.build([str(run), str(run2)])
