"""Dataset index, validation, decoding and the cached, preprocessed tensors.

Every image goes through the same C++ pipeline as serving: ``decode_image`` then
``preprocess_batch`` with the model's ``PreprocessSpec``. The float32 result is cached
(no augmentation in the cache); augmentation runs afterwards in tf.data on the
normalised tensor (see :func:`make_dataset`). With ``augment=False`` the tensors the
input pipeline yields are exactly ``preprocess(decode_image(file bytes), spec)``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from hemovision_contracts import CLASS_NAMES  # the training label set: the class folders, in output-unit order

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DatasetError(ValueError):
    """The data folder cannot be used for training (message says what and where)."""


@dataclass(frozen=True)
class Record:
    path: str  # relative to the data folder, as in splits.csv
    label: int
    split: str


# ----------------------------------------------------------------------------- index

def load_index(data_dir: str | os.PathLike, *, limit_per_class: int | None = None,
               seed: int = 0, check_files: bool = True) -> list[Record]:
    """Read and validate ``<data_dir>/splits.csv`` (columns path,label,split).

    ``limit_per_class`` keeps at most that many images per (class, split) - for tiny runs.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    splits_csv = root / "splits.csv"
    if not splits_csv.is_file():
        raise DatasetError(f"missing splits.csv in dataset folder {root}")
    for name in CLASS_NAMES:
        folder = root / name
        if folder.is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            raise DatasetError(f"class folder is empty: {folder}")
    records: list[Record] = []
    with open(splits_csv, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "split"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{splits_csv}: missing column(s) {sorted(missing)}; need path,label,split")
        for line_no, row in enumerate(reader, start=2):
            label, split, rel = (row["label"] or "").strip(), (row["split"] or "").strip(), (row["path"] or "").strip()
            if label not in CLASS_NAMES:
                raise DatasetError(f"{splits_csv}:{line_no}: label {label!r} is not one of the eight classes "
                                   f"{list(CLASS_NAMES)}")
            if split not in SPLITS:
                raise DatasetError(f"{splits_csv}:{line_no}: split {split!r} is not one of {list(SPLITS)}")
            if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise DatasetError(f"{splits_csv}:{line_no}: bad path {rel!r}")
            records.append(Record(rel, CLASS_NAMES.index(label), split))
    if not records:
        raise DatasetError(f"{splits_csv} lists no images")
    for c, name in enumerate(CLASS_NAMES):
        if not any(r.label == c for r in records):
            raise DatasetError(f"class {name!r} has no images in {splits_csv}")
    if not any(r.split == "train" for r in records):
        raise DatasetError(f"{splits_csv} has no train images")
    if limit_per_class is not None:
        rng = random.Random(seed)
        kept: list[Record] = []
        for split in SPLITS:
            for c in range(len(CLASS_NAMES)):
                group = sorted((r for r in records if r.split == split and r.label == c), key=lambda r: r.path)
                rng.shuffle(group)
                kept.extend(group[:limit_per_class])
        records = kept
    if check_files:
        for r in records:
            if not (root / r.path).is_file():
                raise DatasetError(f"image listed in splits.csv not found: {root / r.path}")
    return records


def data_hash(data_dir: str | os.PathLike, records: Sequence[Record]) -> str:
    """sha256 over the sorted (path, label, split, sha256(file bytes)) rows."""
    root = Path(data_dir)
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.path):
        fh = hashlib.sha256((root / r.path).read_bytes()).hexdigest()
        h.update(f"{r.path},{CLASS_NAMES[r.label]},{r.split},{fh}\n".encode())
    return "sha256:" + h.hexdigest()


# ----------------------------------------------------------------------------- decode + preprocess

def decode_files(data_dir: str | os.PathLike, records: Sequence[Record]) -> list[np.ndarray]:
    """Decode every image with the serving decoder; a corrupt file raises DatasetError naming it."""
    from hemovision_pixels import ImageRejected, decode_image

    root = Path(data_dir)
    out = []
    for r in records:
        p = root / r.path
        try:
            out.append(decode_image(p.read_bytes()))
        except ImageRejected as e:
            raise DatasetError(f"corrupt or unsupported image {p}: {e}") from e
        except OSError as e:
            raise DatasetError(f"cannot read image {p}: {e}") from e
    return out


# The PBC slides' background white (median over 1,000 train images of the 90th percentile
# per channel, what the locate step measures): white balance maps every slide's
# background to it, so PBC images keep their colour and other labs' are brought to it.
PBC_WHITE = (254.0, 228.0, 203.0)


def base_spec_dict(input_size: int, mean: Sequence[float] = (0.0, 0.0, 0.0),
                   std: Sequence[float] = (1.0, 1.0, 1.0), *, version: int = 1) -> dict[str, Any]:
    """Version 1: centre square + resize (v1 models). Version 2 adds input standardisation:
    locate the cell and re-frame it to a canonical scale, white-balance to PBC's background
    (hemovision_pixels.LocateSpec holds the defaults, docs/preprocessing.md the why)."""
    from hemovision_pixels import LocateSpec

    d: dict[str, Any] = {"version": int(version), "input_size": int(input_size), "crop": "center_square"}
    if version >= 2:
        d["locate"] = LocateSpec().to_dict()
        d["white_balance"] = {"target": list(PBC_WHITE)}
    return d | {"stain_normalization": None, "clahe": None, "blur_sigma": 0.0,
                "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def preprocess_images(images: Sequence[np.ndarray], spec_dict: dict[str, Any], *, chunk: int = 2048) -> np.ndarray:
    """Run the C++ pipeline over decoded uint8 images -> float32 [N,S,S,3]."""
    from hemovision_pixels import PreprocessSpec, preprocess_batch

    spec = PreprocessSpec.from_dict(spec_dict)
    s = int(spec_dict["input_size"])
    out = np.empty((len(images), s, s, 3), np.float32)
    for i in range(0, len(images), chunk):
        out[i:i + chunk] = preprocess_batch(list(images[i:i + chunk]), spec, threads=0)
    return out


def channel_stats(images: Sequence[np.ndarray], input_size: int, *,
                  spec_version: int = 1) -> tuple[list[float], list[float]]:
    """Per-channel mean/std (in [0,1] units) of the train images after the spec's pixel steps."""
    x = preprocess_images(images, base_spec_dict(input_size, version=spec_version))
    flat = x.reshape(-1, 3).astype(np.float64)
    return flat.mean(0).round(6).tolist(), flat.std(0).round(6).tolist()


@dataclass
class PreparedData:
    spec: dict[str, Any]
    x: dict[str, np.ndarray]  # split -> float32 [N,S,S,3], model-ready (preprocess output)
    y: dict[str, np.ndarray]  # split -> int32 [N]
    paths: dict[str, list[str]]
    data_hash: str
    cache_key: str = ""


def prepare_data(data_dir: str | os.PathLike, *, input_size: int, cache_dir: str | os.PathLike | None = None,
                 limit_per_class: int | None = None, seed: int = 0, log=print,
                 spec_version: int = 1) -> PreparedData:
    """Index + validate, decode, compute train mean/std, preprocess every split once (cached)."""
    records = load_index(data_dir, limit_per_class=limit_per_class, seed=seed)
    dhash = data_hash(data_dir, records)
    tag = "v1" if spec_version == 1 else json.dumps(base_spec_dict(input_size, version=spec_version),
                                                     sort_keys=True)
    key = hashlib.sha256(f"{dhash}|{input_size}|{tag}".encode()).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"pbc-{key}.npz" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        log(f"loading preprocessed cache {cache_file}")
        with np.load(cache_file, allow_pickle=False) as z:
            spec = json.loads(str(z["spec"]))
            x = {s: z[f"x_{s}"] for s in SPLITS}
            y = {s: z[f"y_{s}"] for s in SPLITS}
    else:
        log(f"decoding {len(records)} images")
        images = decode_files(data_dir, records)
        train_imgs = [im for im, r in zip(images, records) if r.split == "train"]
        mean, std = channel_stats(train_imgs, input_size, spec_version=spec_version)
        spec = base_spec_dict(input_size, mean, std, version=spec_version)
        log(f"train mean={mean} std={std}; preprocessing")
        x, y = {}, {}
        for s in SPLITS:
            idx = [i for i, r in enumerate(records) if r.split == s]
            x[s] = preprocess_images([images[i] for i in idx], spec) if idx else \
                np.zeros((0, input_size, input_size, 3), np.float32)
            y[s] = np.array([records[i].label for i in idx], np.int32)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp.npz")
            np.savez(tmp, spec=json.dumps(spec), **{f"x_{s}": x[s] for s in SPLITS},
                     **{f"y_{s}": y[s] for s in SPLITS})
            os.replace(tmp, cache_file)
    paths = {s: [r.path for r in records if r.split == s] for s in SPLITS}
    return PreparedData(spec=spec, x=x, y=y, paths=paths, data_hash=dhash, cache_key=key)


def lab_augmented_copies(data_dir: str | os.PathLike, data: PreparedData, *, copies: int, seed: int,
                         cache_dir: str | os.PathLike | None, log=print) -> list[np.ndarray]:
    """``copies`` seeded lab-augmented versions of the train split (lab_augment.py), each the
    uint8 output of the model's own pixel pipeline; cached next to the tensors."""
    from .lab_augment import augmented_copy

    out: list[np.ndarray] = []
    images: list[np.ndarray] | None = None
    for k in range(copies):
        f = Path(cache_dir) / f"pbc-{data.cache_key}-lab{seed}-{k}.npy" if cache_dir else None
        if f is not None and f.is_file():
            out.append(np.load(f))
            continue
        if images is None:
            log(f"decoding {len(data.paths['train'])} train images for lab augmentation")
            images = decode_files(data_dir, [Record(p, 0, "train") for p in data.paths["train"]])
        log(f"lab-augmented copy {k + 1}/{copies}")
        copy = augmented_copy(images, data.spec, seed=seed * 1000 + k)
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".tmp.npy")
            np.save(tmp, copy)
            os.replace(tmp, f)
        out.append(copy)
    return out


def class_weights(y: np.ndarray, num_classes: int = len(CLASS_NAMES), power: float = 0.5) -> np.ndarray:
    """(N / (K * n_c)) ** power, renormalised to mean 1 over the samples."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / (num_classes * np.maximum(counts, 1))) ** power, 0.0)
    w = w / (w[y].mean() if len(y) else 1.0)
    return w.astype(np.float32)


# ----------------------------------------------------------------------------- tf.data + augmentation

@dataclass(frozen=True)
class AugmentConfig:
    max_scale: float = 0.10      # zoom in/out by up to 10 %
    scale_prob: float = 0.25     # fraction of images zoomed (bilinear)
    max_shift: float = 0.06      # shift by up to 6 % of the side
    brightness: float = 0.06     # additive, in [0,1] pixel units
    contrast: float = 0.12       # multiplicative around the image mean
    saturation: float = 0.15     # blend with grey
    channel_gain: float = 0.04   # per-channel gain: stain-intensity jitter


def augment_batch(x, mean, std, cfg: AugmentConfig, seed=None):
    """Augment a batch of model-ready (normalised) tensors.

    Geometry: random element of the dihedral group (flips + 90 degree rotations, per image),
    then a small integer shift and, for a quarter of the images, a small zoom (reflect padding). Colour: done in pixel space
    (x*std+mean), the same jitter on the three channels' shared parts, clipped to [0,1], then
    normalised back, so the result is a tensor the serving pipeline could have produced.
    """
    import tensorflow as tf

    n = tf.shape(x)[0]
    size = tf.shape(x)[1]
    rnd = lambda shape, lo, hi: tf.random.uniform(shape, lo, hi)  # noqa: E731
    def where(mask, a, b):
        return tf.where(tf.reshape(mask, [-1, 1, 1, 1]), a, b)
    x = where(rnd([n], 0, 1) < 0.5, tf.reverse(x, [2]), x)
    x = where(rnd([n], 0, 1) < 0.5, tf.reverse(x, [1]), x)
    x = where(rnd([n], 0, 1) < 0.5, tf.transpose(x, [0, 2, 1, 3]), x)
    # shift: integer translations (nearest = exact pixel copies, no interpolation blur, reflect padding)
    sizef = tf.cast(size, tf.float32)
    zeros, ones = tf.zeros([n]), tf.ones([n])
    sx = tf.round(rnd([n], -cfg.max_shift, cfg.max_shift) * sizef)
    sy = tf.round(rnd([n], -cfg.max_shift, cfg.max_shift) * sizef)
    shift = tf.stack([ones, zeros, sx, zeros, ones, sy, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=shift, output_shape=tf.stack([size, size]), fill_value=0.0,
        interpolation="NEAREST", fill_mode="REFLECT")
    # scale: bilinear zoom about the centre, on a random quarter of the images only, so that the
    # network mostly sees images as sharp as the serving pipeline's (interpolation blurs)
    scale = tf.exp(rnd([n], -cfg.max_scale, cfg.max_scale))
    inv = 1.0 / scale
    c = (sizef - 1.0) / 2.0
    t = c - inv * c
    zoom = tf.stack([inv, zeros, t, zeros, inv, t, zeros, zeros], axis=1)
    zoomed = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=zoom, output_shape=tf.stack([size, size]), fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    x = where(rnd([n], 0, 1) < cfg.scale_prob, zoomed, x)
    # colour in pixel units
    mean = tf.reshape(tf.constant(mean, tf.float32), [1, 1, 1, 3])
    std = tf.reshape(tf.constant(std, tf.float32), [1, 1, 1, 3])
    p = x * std + mean
    grey = tf.reduce_mean(p, axis=-1, keepdims=True)
    sat = 1.0 + tf.reshape(rnd([n], -cfg.saturation, cfg.saturation), [-1, 1, 1, 1])
    p = grey + sat * (p - grey)
    gain = 1.0 + tf.reshape(rnd([n * 3], -cfg.channel_gain, cfg.channel_gain), [-1, 1, 1, 3])
    p = p * gain
    img_mean = tf.reduce_mean(p, axis=[1, 2, 3], keepdims=True)
    con = 1.0 + tf.reshape(rnd([n], -cfg.contrast, cfg.contrast), [-1, 1, 1, 1])
    p = img_mean + con * (p - img_mean)
    p = p + tf.reshape(rnd([n], -cfg.brightness, cfg.brightness), [-1, 1, 1, 1])
    p = tf.clip_by_value(p, 0.0, 1.0)
    return (p - mean) / std


def make_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, training: bool, augment: bool,
                 spec: dict[str, Any] | None = None, seed: int = 0, sample_weights: np.ndarray | None = None,
                 aug_cfg: AugmentConfig = AugmentConfig()):
    """tf.data over the cached tensors. ``training`` shuffles (and drops nothing); ``augment``
    applies :func:`augment_batch` per batch. With augment=False the images are the cache
    unchanged, i.e. the preprocess pipeline's output."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if sample_weights is None else (x, y, sample_weights))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        if spec is None:
            raise ValueError("augment=True needs the spec (mean/std)")
        mean, std = spec["mean"], spec["std"]
        def _aug(xb, *rest):
            return (augment_batch(xb, mean, std, aug_cfg), *rest)
        ds = ds.map(_aug, num_parallel_calls=1)
    return ds.prefetch(2)


def make_lab_dataset(x: np.ndarray, copies: Sequence[np.ndarray], y: np.ndarray, sample_weights: np.ndarray, *,
                     batch_size: int, spec: dict[str, Any], seed: int, lab_share: float, first_epoch: int = 0,
                     aug_cfg: AugmentConfig = AugmentConfig()):
    """Training batches mixing clean tensors with lab-augmented ones: in epoch e each image is
    taken from copy e % len(copies) with probability ``lab_share``, else clean; then the
    tensor-level :func:`augment_batch` (flips, rotations, light colour jitter) as usual."""
    import tensorflow as tf

    mean = np.asarray(spec["mean"], np.float32)
    std = np.asarray(spec["std"], np.float32)
    s = x.shape[1]
    epoch = [first_epoch]

    def gen():
        e = epoch[0]
        epoch[0] += 1
        rng = np.random.default_rng(seed + 7919 * e)
        copy = copies[e % len(copies)]
        order = rng.permutation(len(x))
        use_lab = rng.random(len(x)) < lab_share
        for i in range(0, len(order), batch_size):
            idx = np.sort(order[i:i + batch_size])
            xb = x[idx].copy()
            lab = use_lab[idx]
            if lab.any():
                xb[lab] = (copy[idx[lab]].astype(np.float32) / np.float32(255.0) - mean) / std
            yield xb, y[idx], sample_weights[idx]

    sig = (tf.TensorSpec([None, s, s, 3], tf.float32), tf.TensorSpec([None], tf.int32),
           tf.TensorSpec([None], tf.float32))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    mean_l, std_l = spec["mean"], spec["std"]
    ds = ds.map(lambda xb, yb, wb: (augment_batch(xb, mean_l, std_l, aug_cfg), yb, wb), num_parallel_calls=1)
    return ds.prefetch(2)
