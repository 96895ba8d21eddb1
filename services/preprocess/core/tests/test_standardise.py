"""Spec v2 input standardisation: cell localisation, re-framing, white balance.

Cross-checked against the OpenCV implementation of the same algorithm (opencv_reference.py)
on real cells from two labs (PBC and external_dev) and on synthetic slides; v1 specs keep
their exact dict and output."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import opencv_reference as ref
from hemovision_pixels import (
    LocateSpec,
    PreprocessSpec,
    WhiteBalanceSpec,
    _core,
    decode_image,
    model_image,
    preprocess,
    preprocess_batch,
    preprocess_with_info,
    review_reasons,
)

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
V1 = {"version": 1, "input_size": 64, "crop": "center_square", "stain_normalization": None, "clahe": None,
      "blur_sigma": 0.0, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.1]}
V2 = {**V1, "version": 2, "locate": LocateSpec().to_dict(), "white_balance": {"target": [254.0, 228.0, 203.0]}}


def real_cells(every: int = 60) -> list[np.ndarray]:
    rows = list(csv.DictReader(open(DATA / "external_dev" / "labels.csv")))
    paths = [DATA / "external_dev" / r["path"] for r in rows[::4]]
    rows = list(csv.DictReader(open(DATA / "pbc_128" / "splits.csv")))
    paths += [DATA / "pbc_128" / r["path"] for r in rows[::every]]
    return [decode_image(p.read_bytes()) for p in paths]


def slide(h=200, w=240, *, cell=(120, 100), radius=30, background=(245, 230, 210), seed=0) -> np.ndarray:
    """A synthetic smear: tinted background, pink red cells, one purple nucleus."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = background
    yy, xx = np.mgrid[:h, :w]
    for _ in range(6):  # red cells: absorb green, barely red
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 18**2] *= (0.95, 0.75, 0.85)
    cx, cy = cell
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = (90, 60, 140)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def test_v1_dict_and_output_are_unchanged():
    s = PreprocessSpec.from_dict(V1)
    assert s.to_dict() == V1  # no v2 keys appear in a v1 version's spec
    img = slide()
    assert np.array_equal(preprocess(img, s), preprocess_with_info(img, s)[0])
    _, info = preprocess_with_info(img, s)
    assert not info.cell_found and info.zoom == 1.0 and review_reasons(info, s) == []


def test_v2_round_trip_and_validation():
    s = PreprocessSpec.from_dict(V2)
    assert PreprocessSpec.from_dict(s.to_dict()) == s
    assert s.to_dict()["locate"] == LocateSpec().to_dict()
    with pytest.raises(ValueError, match="version 2"):
        PreprocessSpec.from_dict({**V1, "locate": LocateSpec().to_dict()})
    with pytest.raises(ValueError, match="locate.min_zoom"):
        PreprocessSpec.from_dict({**V2, "locate": {**LocateSpec().to_dict(), "min_zoom": 3.0}})
    with pytest.raises(ValueError, match="unknown key"):
        PreprocessSpec.from_dict({**V2, "locate": {"radius": 3}})
    with pytest.raises(ValueError, match="white_balance.target"):
        WhiteBalanceSpec((300, 1, 1))


@pytest.mark.parametrize("background", [(245, 230, 210), (250, 240, 160), (250, 205, 225), (215, 225, 245)])
def test_locate_finds_the_nucleus_whatever_the_background(background):
    img = slide(background=background)
    d = _core.locate_cell(img, LocateSpec().native())
    assert d["cell_found"]
    assert abs(d["cx"] - 120) < 4 and abs(d["cy"] - 100) < 4
    assert 60 <= d["size"] <= 75  # diameter 60 plus the lobe-joining dilation
    assert d["white"][0] >= background[0] - 12


def test_locate_matches_opencv_on_real_cells():
    params = LocateSpec()
    images = real_cells()
    found = 0
    for img in images:
        a, b = _core.locate_cell(img, params.native()), ref.locate_cell(img, **params.to_dict())
        assert a["cell_found"] == b["cell_found"]
        assert tuple(a["white"]) == b["white"]
        assert a["threshold_od"] == pytest.approx(b["threshold_od"], abs=1e-6)
        if a["cell_found"]:
            found += 1
            assert (a["cx"], a["cy"], a["size"]) == pytest.approx((b["cx"], b["cy"], b["size"]), abs=1e-3)
            assert a["nucleus"] == pytest.approx(b["nucleus"], abs=1e-3)
    assert found == len(images)  # every real white cell is found


def test_reframe_matches_opencv_on_real_cells():
    params = LocateSpec()
    for img in real_cells():
        ours, info = _core.reframe(img, params.native(), 64)
        theirs = ref.reframe(img, ref.locate_cell(img, **params.to_dict()), 64, **params.to_dict())
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_reframe_centres_and_scales_the_cell():
    img = slide(h=300, w=300, cell=(90, 200), radius=20)
    out, info = _core.reframe(img, LocateSpec().native(), 100)
    assert info["cell_found"]
    # re-located on the output: centred, and 0.4 of the frame (nucleus + dilation margin)
    d = _core.locate_cell(out, LocateSpec().native())
    assert abs(d["cx"] - 50) <= 3 and abs(d["cy"] - 50) <= 3
    assert 0.34 <= d["size"] / 100 <= 0.46


def test_outside_the_slide_is_background_not_smeared_edges():
    img = slide(h=120, w=120, cell=(60, 60), radius=8)  # small cell -> zoom > 1, window inside
    big = slide(h=120, w=120, cell=(60, 60), radius=50)  # large cell -> zoom < 1, window outside
    out, info = _core.reframe(big, LocateSpec().native(), 64)
    assert info["zoom"] < 1
    corner = out[:4, :4].reshape(-1, 3)
    assert np.all(np.abs(corner.astype(int) - np.array(info["white"], int)) <= 1)
    out, info = _core.reframe(img, LocateSpec().native(), 64)
    assert info["zoom"] > 1


def test_no_cell_keeps_the_framing_and_says_so():
    s = PreprocessSpec.from_dict(V2)
    blank = np.full((150, 150, 3), (240, 228, 205), np.uint8)
    x, info = preprocess_with_info(blank, s)
    assert not info.cell_found
    assert review_reasons(info, s) == ["cell_not_found"]
    assert x.shape == (64, 64, 3)


def test_unusual_cell_size_is_a_review_reason():
    s = PreprocessSpec.from_dict(V2)
    tiny = slide(h=400, w=400, cell=(200, 200), radius=6)
    _, info = preprocess_with_info(tiny, s)
    assert info.cell_found and info.zoom > s.locate.max_zoom
    assert review_reasons(info, s) == ["cell_size_unusual"]
    _, info = preprocess_with_info(slide(), s)
    assert review_reasons(info, s) == []


def test_stain_check_flags_a_nucleus_stained_unlike_the_reference():
    from hemovision_pixels import StainCheckSpec

    img = slide()  # nucleus (90, 60, 140) on (245, 230, 210)
    _, info = preprocess_with_info(img, PreprocessSpec.from_dict(V2))
    od = info.nucleus_od()
    assert od[1] > od[0] > od[2] > 0  # purple: absorbs green most, then red, least blue
    near = {**V2, "stain_check": {"reference_od": [v + 0.05 for v in od], "max_distance": 0.3}}
    far = {**V2, "stain_check": {"reference_od": [v + 0.4 for v in od], "max_distance": 0.3}}
    assert review_reasons(info, PreprocessSpec.from_dict(near)) == []
    assert review_reasons(info, PreprocessSpec.from_dict(far)) == ["stain_unusual"]
    assert PreprocessSpec.from_dict(V2).to_dict() == V2  # optional: absent stays absent
    assert PreprocessSpec.from_dict(far).to_dict()["stain_check"] == StainCheckSpec(
        tuple(v + 0.4 for v in od), 0.3).to_dict()
    with pytest.raises(ValueError, match="needs locate"):
        PreprocessSpec.from_dict({**far, "locate": None})


def test_white_balance_maps_the_background_to_the_target():
    s = PreprocessSpec.from_dict({**V2, "mean": [0, 0, 0], "std": [1, 1, 1]})
    for background in [(250, 240, 160), (215, 225, 245)]:
        img = slide(background=background)
        u8 = model_image(preprocess(img, s), s)
        corner = u8[:3, :3].reshape(-1, 3).mean(0)
        assert np.all(np.abs(corner - np.array([254, 228, 203])) < 12), (background, corner)


def test_training_batch_equals_serving_single_bit_for_bit():
    """Training runs preprocess_batch (threads), serving preprocess_with_info: one spec, one output."""
    s = PreprocessSpec.from_dict(V2)
    images = real_cells(every=150)
    batch = preprocess_batch(images, s, threads=2)
    for i, img in enumerate(images):
        single, _ = preprocess_with_info(img, s)
        assert np.array_equal(batch[i], single)


def test_model_image_inverts_normalisation_exactly():
    s = PreprocessSpec.from_dict(V2)
    img = slide()
    x = preprocess(img, s)
    u8 = model_image(x, s)
    assert np.array_equal(_core.normalize(u8, s.mean, s.std), x)
