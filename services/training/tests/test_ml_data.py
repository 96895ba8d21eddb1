"""Dataset validation errors and the no-skew guarantee of the input pipeline."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from hemovision_training.ml.data import (CLASS_NAMES, DatasetError, base_spec_dict, decode_files, load_index,
                                         make_dataset, prepare_data)

PBC = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "pbc_128"


def _mini_dataset(tmp_path: Path, per_class: int = 1) -> Path:
    """A copy of a few real pbc_128 images in the ImageFolder + splits.csv layout."""
    root = tmp_path / "mini"
    rows = ["path,label,split"]
    for name in CLASS_NAMES:
        (root / name).mkdir(parents=True)
        src = sorted((PBC / name).glob("*.jpg"))[: per_class * 3]
        for i, f in enumerate(src):
            shutil.copy(f, root / name / f.name)
            rows.append(f"{name}/{f.name},{name},{('train', 'val', 'test')[i % 3]}")
    (root / "splits.csv").write_text("\n".join(rows) + "\n")
    return root


def test_pbc_data_is_present():
    assert (PBC / "splits.csv").is_file(), f"pbc_128 data missing at {PBC}"


def test_unknown_dataset_path(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_index(tmp_path / "nope")


def test_missing_splits_csv(tmp_path):
    root = _mini_dataset(tmp_path)
    (root / "splits.csv").unlink()
    with pytest.raises(DatasetError, match="missing splits.csv"):
        load_index(root)


def test_empty_class_folder(tmp_path):
    root = _mini_dataset(tmp_path)
    for f in (root / "monocyte").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="empty.*monocyte"):
        load_index(root)


def test_label_outside_the_eight(tmp_path):
    root = _mini_dataset(tmp_path)
    with open(root / "splits.csv", "a") as f:
        f.write("basophil/x.jpg,blast,train\n")
    with pytest.raises(DatasetError, match="'blast' is not one of the eight"):
        load_index(root)


def test_missing_file_listed(tmp_path):
    root = _mini_dataset(tmp_path)
    with open(root / "splits.csv", "a") as f:
        f.write("basophil/missing.jpg,basophil,train\n")
    with pytest.raises(DatasetError, match="missing.jpg"):
        load_index(root)


def test_corrupt_image_is_named(tmp_path):
    root = _mini_dataset(tmp_path)
    bad = next((root / "platelet").glob("*.jpg"))
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    records = load_index(root)
    with pytest.raises(DatasetError, match=bad.name):
        decode_files(root, records)


def test_input_pipeline_without_augmentation_equals_preprocess(tmp_path):
    """The training tensors (augment off) are exactly preprocess(decode_image(bytes), spec)."""
    from hemovision_pixels import PreprocessSpec, decode_image, preprocess

    root = _mini_dataset(tmp_path)
    data = prepare_data(root, input_size=64, cache_dir=tmp_path / "cache")
    spec = PreprocessSpec.from_dict(data.spec)
    assert data.spec["mean"] != [0.0, 0.0, 0.0]
    for split in ("train", "test"):
        ds = make_dataset(data.x[split], data.y[split], batch_size=5, training=False, augment=False)
        xs = np.concatenate([b[0].numpy() for b in ds])
        ref = np.stack([preprocess(decode_image((root / p).read_bytes()), spec) for p in data.paths[split]])
        np.testing.assert_array_equal(xs, ref)
    # the cache gives the same tensors back
    again = prepare_data(root, input_size=64, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.x["val"], data.x["val"])
    assert again.spec == data.spec


def test_augmentation_keeps_shape_and_range(tmp_path):
    root = _mini_dataset(tmp_path)
    data = prepare_data(root, input_size=64)
    ds = make_dataset(data.x["train"], data.y["train"], batch_size=8, training=True, augment=True, spec=data.spec)
    xb, yb = next(iter(ds))
    assert xb.shape == (8, 64, 64, 3)
    mean, std = np.array(data.spec["mean"]), np.array(data.spec["std"])
    pix = xb.numpy() * std + mean
    assert pix.min() >= -1e-5 and pix.max() <= 1 + 1e-5
    assert not np.allclose(xb.numpy(), data.x["train"][: 8])


def test_base_spec_is_valid():
    from hemovision_pixels import PreprocessSpec
    PreprocessSpec.from_dict(base_spec_dict(64, [0.5] * 3, [0.2] * 3))
