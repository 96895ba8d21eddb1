"""The input plausibility features against a per-image reference computed the obvious way."""

from __future__ import annotations

import numpy as np
import pytest

from hemovision_inference.input_check import FEATURE_NAMES, features


def reference(image: np.ndarray) -> dict[str, float]:
    rgb = image
    gray = rgb.mean(axis=-1)
    s = gray.shape[0]
    q = s // 4
    inner = gray[q : s - q, q : s - q]
    border = (gray.sum() - inner.sum()) / (gray.size - inner.size)
    return {
        "mean_r": rgb[..., 0].mean(), "std_b": rgb[..., 2].std(),
        "saturation": (rgb.max(axis=-1) - rgb.min(axis=-1)).mean(),
        "center_minus_border": inner.mean() - border,
        "log_sharpness": np.log(np.abs(np.diff(gray, axis=1)).mean() + np.abs(np.diff(gray, axis=0)).mean() + 1e-4),
        "bright_fraction": (gray > 0.8).mean(),
        "gray_p10": np.percentile(gray, 10), "gray_p90": np.percentile(gray, 90),
    }


@pytest.mark.parametrize("size", [64, 63])
def test_features_match_the_plain_definition(size):
    rng = np.random.default_rng(size)
    mean, std = np.array([0.8, 0.7, 0.7], np.float32), np.array([0.2, 0.2, 0.1], np.float32)
    rgb = rng.uniform(0, 1, (3, size, size, 3)).astype(np.float32)
    rgb[1, size // 3 : size // 2] = 0.95  # a bright band: bright fraction and percentiles move
    got = features((rgb - mean) / std, mean, std)
    assert got.shape == (3, len(FEATURE_NAMES))
    for i in range(3):
        for name, value in reference(rgb[i]).items():
            assert got[i, FEATURE_NAMES.index(name)] == pytest.approx(float(value), rel=1e-4, abs=1e-5), name


def test_one_reference_per_pixel_pipeline(tmp_path):
    """A version gets the reference fitted with its own spec, or none: a reference fitted on
    centre-cropped images never judges a standardised (spec v2) version's tensors."""
    import json

    from hemovision_inference.input_check import InputReference, fit, merged

    rng = np.random.default_rng(0)
    v1 = {"input_size": 64, "crop": "center_square", "stain_normalization": None, "clahe": None, "blur_sigma": 0.0}
    v2 = {**v1, "locate": {"work_size": 96}, "white_balance": {"target": [254, 228, 203]}}
    ref1 = fit(rng.normal(0, 1, (50, 13)), rng.normal(0, 1, (20, 13)), v1)
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(ref1))  # the old single-reference layout still loads
    refs = InputReference.load(path)
    assert refs.for_spec(v1) is not None and refs.for_spec(v2) is None
    ref2 = fit(rng.normal(5, 1, (50, 13)), rng.normal(5, 1, (20, 13)), v2)
    both = merged(json.loads(path.read_text()), ref2)
    assert len(merged(both, ref2)["references"]) == 2  # refitting replaces, never duplicates
    path.write_text(json.dumps(both))
    refs = InputReference.load(path)
    assert refs.for_spec(v1).mean.tolist() == ref1["mean"]
    assert refs.for_spec(v2).mean.tolist() == ref2["mean"]
    assert refs.for_spec({**v1, "input_size": 128}) is None


def test_a_v2_spec_survives_the_trip_inference_to_preprocess():
    """ModelInfo.preprocessing (built by inference from hemovision.json) is what the preprocess
    service turns back into a spec: a v2 spec must come out running the very same pixels."""
    from hemovision_inference.service import ModelMetadata
    from hemovision_inference.model_info import model_info
    from hemovision_pixels import LocateSpec, PreprocessSpec, preprocess_with_info, review_reasons
    from hemovision_preprocess.servicer import spec_from_proto

    pre = {"version": 2, "input_size": 64, "crop": "center_square", "locate": LocateSpec().to_dict(),
           "white_balance": {"target": [254.0, 228.0, 203.0]},
           "stain_check": {"reference_od": [0.9572, 1.468, 0.3929], "max_distance": 0.8342},
           "stain_normalization": None, "clahe": None, "blur_sigma": 0.0,
           "mean": [0.877466, 0.752164, 0.723029], "std": [0.162353, 0.185693, 0.08181]}
    meta = ModelMetadata(name="hemovision", version=2, class_names=["a"] * 8, input_size=64, preprocessing=pre,
                         temperature=1.0, review_threshold=0.5, ood_threshold=1.0)
    original = PreprocessSpec.from_dict(pre)
    travelled = PreprocessSpec.from_dict(spec_from_proto(model_info(meta).preprocessing))
    assert travelled.locate is not None and travelled.white_balance is not None and travelled.stain_check is not None
    rng = np.random.default_rng(1)
    img = np.full((120, 140, 3), (240, 226, 205), np.uint8)
    img[40:80, 50:95] = (95, 60, 140)  # a nucleus-stained blob off-centre
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    a, info_a = preprocess_with_info(img, original)
    b, info_b = preprocess_with_info(img, travelled)
    assert info_a.cell_found and np.array_equal(a, b)
    assert review_reasons(info_a, original) == review_reasons(info_b, travelled)
