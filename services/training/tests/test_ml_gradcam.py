"""On the shipped model, the Grad-CAM peak falls on the stained (purple) cell."""
import csv
import json
from pathlib import Path

import numpy as np
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
