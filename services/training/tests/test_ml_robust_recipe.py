"""The shift-robust recipe (issue 19): GroupNorm, spec v2 standardisation, lab augmentation applied
before the pixel pipeline -- a tiny real run on pbc_128, exported and served bit-identically."""
import json
from pathlib import Path

import numpy as np
import pytest

from hemovision_training.ml.data import PBC_WHITE, base_spec_dict
from hemovision_training.ml.lab_augment import augment_image, augmented_copy
from hemovision_training.ml.train import TrainConfig, train

PBC = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "pbc_128"


def pbc_images(n: int = 6) -> list[np.ndarray]:
    from hemovision_pixels import decode_image

    return [decode_image(p.read_bytes()) for p in sorted((PBC / "neutrophil").iterdir())[:n]]


def test_lab_augment_is_seeded_and_varied():
    img = pbc_images(1)[0]
    a = [augment_image(img, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])  # same seed, same image
    outs = [augment_image(img, np.random.default_rng(s)) for s in range(12)]
    assert all(o.dtype == np.uint8 and o.ndim == 3 and o.shape[2] == 3 for o in outs)
    assert len({o.shape for o in outs}) > 3  # other labs' sizes and framings
    assert len({round(float(o.mean()), 1) for o in outs}) > 6  # and colours


def test_augmented_copy_is_the_pipelines_output():
    spec = base_spec_dict(32, version=2)
    copy = augmented_copy(pbc_images(), spec, seed=3)
    assert copy.shape == (6, 32, 32, 3) and copy.dtype == np.uint8
    assert np.array_equal(copy, augmented_copy(pbc_images(), spec, seed=3))


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust")
    result = train(TrainConfig(data_dir=str(PBC), out_dir=str(tmp / "run"), epochs=2, batch_size=16,
                               limit_per_class=4, cache_dir=str(tmp / "cache"), model_base=str(tmp / "models"),
                               widths=(16, 32, 48, 64), stem_width=8, norm="group", spec_version=2,
                               lab_copies=2, lab_share=0.75))
    return result, tmp


def test_robust_recipe_exports_a_standardising_groupnorm_model(robust_run):
    import keras

    result, tmp = robust_run
    meta = json.loads((Path(result["export_path"]) / "assets.extra" / "hemovision.json").read_text())
    pre = meta["preprocessing"]
    assert pre["version"] == 2 and pre["locate"] and pre["white_balance"]["target"] == list(PBC_WHITE)
    model = keras.models.load_model(Path(result["out_dir"]) / "final.keras")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "GroupNormalization" in kinds and "BatchNormalization" not in kinds
    assert sorted(p.name for p in (tmp / "cache").glob("*-lab*-*.npy")) and len(list((tmp / "cache").glob("*-lab*"))) == 2


def test_served_input_equals_trained_input(robust_run):
    """The exported spec, run by the serving library on the raw file, gives the very tensors
    training evaluated on (the cached val split)."""
    from hemovision_pixels import PreprocessSpec, decode_image, preprocess_with_info
    from hemovision_training.ml.data import prepare_data

    result, tmp = robust_run
    meta = json.loads((Path(result["export_path"]) / "assets.extra" / "hemovision.json").read_text())
    data = prepare_data(str(PBC), input_size=64, cache_dir=str(tmp / "cache"), limit_per_class=4,
                        seed=TrainConfig.seed, spec_version=2)
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    for path, x in zip(data.paths["val"][:8], data.x["val"][:8]):
        served, _ = preprocess_with_info(decode_image((PBC / path).read_bytes()), spec)
        assert np.array_equal(served, x)


def test_stain_check_is_fitted_into_the_exported_spec(robust_run):
    from hemovision_pixels import PreprocessSpec
    from hemovision_training.ml import stain_check

    result, _ = robust_run
    assert stain_check.main(["--data", str(PBC), "--model", result["export_path"], "--limit-per-class", "20"]) == 0
    meta = json.loads((Path(result["export_path"]) / "assets.extra" / "hemovision.json").read_text())
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    assert spec.stain_check is not None and spec.stain_check.max_distance > 0
    assert spec.stain_check.reference_od[1] > spec.stain_check.reference_od[2]  # nuclei absorb green most
