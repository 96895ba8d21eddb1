import json

import pytest

from hemovision_pixels import ClaheSpec, PreprocessSpec, ReinhardStain

FULL = {
    "version": 1,
    "input_size": 64,
    "crop": "pad_square",
    "stain_normalization": {"method": "reinhard", "target_mean": [70.0, 10.0, -5.0], "target_std": [12.0, 6.0, 5.0]},
    "clahe": {"clip_limit": 2.0, "tiles": 8},
    "blur_sigma": 0.5,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
}


@pytest.mark.parametrize(
    "d",
    [
        FULL,
        {**FULL, "stain_normalization": {"method": "grey_world"}, "clahe": None, "crop": "none"},
        {"version": 1, "input_size": 128},
    ],
)
def test_round_trip(d):
    spec = PreprocessSpec.from_dict(d)
    again = PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert hash(again) == hash(spec)


def test_defaults_and_types():
    spec = PreprocessSpec.from_dict({"version": 1, "input_size": 32})
    assert spec.crop == "center_square" and spec.clahe is None and spec.stain_normalization is None
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)
    full = PreprocessSpec.from_dict(FULL)
    assert full.clahe == ClaheSpec(2.0, 8)
    assert full.stain_normalization == ReinhardStain((70.0, 10.0, -5.0), (12.0, 6.0, 5.0))
    with pytest.raises(AttributeError):
        full.input_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"version": 3}, "version"),
        ({"version": 0}, "version"),
        ({"input_size": 0}, "input_size"),
        ({"input_size": 64.0}, "input_size"),
        ({"input_size": True}, "input_size"),
        ({"crop": "centre"}, "crop"),
        ({"blur_sigma": -1}, "blur_sigma"),
        ({"blur_sigma": float("nan")}, "blur_sigma"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.25, 0.0, 0.25]}, "std"),
        ({"clahe": {"clip_limit": 2.0, "tiles": 0}}, "tiles"),
        ({"clahe": {"clip_limit": -1}}, "clip_limit"),
        ({"clahe": {"tile": 8}}, "unknown key"),
        ({"stain_normalization": {"method": "macenko"}}, "method"),
        ({"stain_normalization": {"method": "reinhard", "target_mean": [1, 2, 3]}}, "target_std"),
        ({"stain_normalization": {"method": "reinhard", "target_mean": [1, 2, 3], "target_std": [1, -1, 1]}}, "target_std"),
        ({"colour": 1}, "unknown key"),
    ],
)
def test_validation_messages(patch, needle):
    with pytest.raises(ValueError, match=needle):
        PreprocessSpec.from_dict({**FULL, **patch})


def test_missing_required():
    with pytest.raises(ValueError, match="version"):
        PreprocessSpec.from_dict({"input_size": 64})
    with pytest.raises(ValueError, match="input_size"):
        PreprocessSpec.from_dict({"version": 1})
    with pytest.raises(ValueError):
        PreprocessSpec.from_dict([1, 2])  # type: ignore[arg-type]


def test_pickle_copy_asdict():
    import copy
    import dataclasses
    import pickle

    import numpy as np

    from hemovision_pixels import preprocess

    spec = PreprocessSpec.from_dict(FULL)
    for other in (pickle.loads(pickle.dumps(spec)), copy.deepcopy(spec), dataclasses.replace(spec)):
        assert other == spec
        img = np.full((10, 12, 3), 99, np.uint8)
        np.testing.assert_array_equal(preprocess(img, other), preprocess(img, spec))
    assert "_native" not in dataclasses.asdict(spec)
    assert dataclasses.replace(spec, input_size=16)._native.input_size == 16
