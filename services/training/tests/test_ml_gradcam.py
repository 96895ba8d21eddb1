"""On the shipped model, the Grad-CAM peak falls on the stained (purple) cell; the forward-only Grad-CAM
(GAP -> Dense heads) equals the GradientTape one, and other graphs fall back to the tape."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[3]
PBC = ROOT / ".." / "shared" / "data" / "pbc_128"
SHIPPED = ROOT / "models" / "hemovision" / "1"


def _stain_mask(rgb_uint8: np.ndarray, size: int) -> np.ndarray:
    """Purple May-Gruenwald-Giemsa stain: blue clearly above green. Resized to the heatmap size."""
    from PIL import Image
    small = np.asarray(Image.fromarray(rgb_uint8).resize((size, size), Image.BILINEAR)).astype(int)
    mask = (small[..., 2] - small[..., 1]) > 35
    return ndimage.binary_dilation(mask, iterations=2)


def test_gradcam_peak_on_stained_cell():
    import tensorflow as tf
    from hemovision_pixels import PreprocessSpec, decode_image, preprocess_batch

    meta = json.loads((SHIPPED / "assets.extra" / "hemovision.json").read_text())
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    size = meta["input_size"]
    with open(PBC / "splits.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    rows = [rows[i] for i in np.random.default_rng(0).choice(len(rows), 200, replace=False)]
    images = [decode_image((PBC / r["path"]).read_bytes()) for r in rows]
    x = preprocess_batch(images, spec, threads=0)
    explain = tf.saved_model.load(str(SHIPPED)).signatures["explain"]
    heat = np.concatenate([explain(image=tf.constant(x[i:i + 50]))["heatmap"].numpy() for i in range(0, 200, 50)])
    hits = 0
    for img, h in zip(images, heat):
        mask = _stain_mask(img, size)
        r, c = np.unravel_index(np.argmax(h), h.shape)
        hits += bool(mask[r, c])
    assert hits / len(images) >= 0.90, f"Grad-CAM peak on the stained cell for {hits}/{len(images)}"


# --- forward-only ("analytic") Grad-CAM in export.py: exact where the map reaches the logits only through
# GlobalAveragePooling2D -> (Dropout) -> Dense [-> Average]; the GradientTape otherwise ---

SMALL = 32
MEMBER_A = {"widths": (8, 16), "blocks": (1, 1), "stem_width": 0, "dropout": 0.1}
MEMBER_B = {"widths": (6, 12), "blocks": (1, 1), "stem_width": 4, "dropout": 0.0}


def _perturb(model, seed):
    """Random weights everywhere (BN statistics included), so the maps and heads are not at their init."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) if "variance" not in v.path
                       else np.abs(w + rng.normal(0, 0.1, w.shape)).astype(w.dtype) + 0.5
                       for w, v in zip(model.get_weights(), model.weights)])
    return model


def _explain_both(model, layer):
    import tensorflow as tf
    from hemovision_training.ml import export as export_mod

    rng = np.random.default_rng(1)
    # a colour offset per image, so that the top class differs across the batch
    x = tf.constant((rng.normal(size=(8, SMALL, SMALL, 3)) + 2 * rng.normal(size=(8, 1, 1, 3))).astype("float32"))
    out = {}
    for how in ("auto", "tape"):
        module = export_mod.build_serving_module(model, input_size=SMALL, temperature=1.3, gradcam_layer=layer,
                                                 gradcam=how)
        out[how] = (module.gradcam_method, {k: v.numpy() for k, v in module.explain(x).items()})
    return out


def _assert_same(out):
    (_, a), (_, t) = out["auto"], out["tape"]
    assert a["heatmap"].shape == (8, SMALL, SMALL) and a["heatmap"].max() == 1.0
    assert len(set(t["logits"].argmax(1))) > 1
    assert np.abs(a["heatmap"] - t["heatmap"]).max() < 1e-4
    np.testing.assert_allclose(a["logits"], t["logits"], atol=1e-6)
    np.testing.assert_allclose(a["probabilities"], t["probabilities"], atol=1e-6)


@pytest.mark.parametrize("dropout", [0.1, 0.0])
def test_analytic_gradcam_equals_tape_single_model(dropout):
    import keras
    from hemovision_training.ml.export import GRADCAM_ANALYTIC, GRADCAM_TAPE
    from hemovision_training.ml.model import build_model

    keras.utils.set_random_seed(8)
    model = _perturb(build_model(SMALL, **{**MEMBER_A, "dropout": dropout}), 8)
    out = _explain_both(model, None)  # default layer: `features`, the last block, straight into GAP
    assert out["auto"][0] == GRADCAM_ANALYTIC and out["tape"][0] == GRADCAM_TAPE
    _assert_same(out)


@pytest.mark.parametrize("layer", ["m0_features,m1_features", "m1_features"])
def test_analytic_gradcam_equals_tape_ensemble(layer):
    import keras
    from hemovision_training.ml.export import GRADCAM_ANALYTIC
    from hemovision_training.ml.model import build_ensemble

    keras.utils.set_random_seed(4)
    ens = _perturb(build_ensemble([MEMBER_A, MEMBER_B], input_size=SMALL), 4)
    out = _explain_both(ens, layer)  # one member alone still gets 1/M of the mean logits' gradient
    assert out["auto"][0] == GRADCAM_ANALYTIC
    _assert_same(out)


def test_gradient_tape_fallback_without_gap_dense_head():
    import keras
    from keras import layers
    from hemovision_training.ml.export import GRADCAM_TAPE, analytic_cam_heads
    from hemovision_training.ml.model import build_ensemble, build_model

    keras.utils.set_random_seed(5)
    # a map that feeds a further block (like the shipped model's s3b2_out), single and ensemble
    single = build_model(SMALL, **MEMBER_A)
    assert analytic_cam_heads(single, ["s1b1_out"]) is None
    ens = build_ensemble([MEMBER_A, MEMBER_B], input_size=SMALL)
    assert analytic_cam_heads(ens, ["m0_s1b1_out", "m1_s1b1_out"]) is None
    assert analytic_cam_heads(ens, ["m0_features", "m1_s1b1_out"]) is None
    # GAP followed by a non-linear hidden layer before the logits
    inp = keras.Input((SMALL, SMALL, 3), name="image")
    f = layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(inp)
    h = layers.Dense(16, activation="relu")(layers.GlobalAveragePooling2D()(f))
    mlp_head = keras.Model(inp, layers.Dense(8, name="logits")(h))
    assert analytic_cam_heads(mlp_head, ["features"]) is None
    # the fallback still explains
    for model, layer in ((single, "s1b1_out"), (mlp_head, "features")):
        out = _explain_both(model, layer)
        assert out["auto"][0] == GRADCAM_TAPE
        _assert_same(out)
