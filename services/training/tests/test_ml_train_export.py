"""A tiny real training run on pbc_128 images, exported, loaded and called through both signatures."""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from hemovision_training.ml.data import CLASS_NAMES
from hemovision_training.ml.train import TrainConfig, train

PBC = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "pbc_128"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    progress = []
    cpu0 = time.process_time()
    result = train(TrainConfig(data_dir=str(PBC), out_dir=str(tmp / "run"), epochs=1, batch_size=16,
                               limit_per_class=4, cache_dir=str(tmp / "cache"), model_base=str(tmp / "models"),
                               widths=(16, 32, 48, 64), stem_width=8),
                   progress_callback=lambda e, n, m: progress.append((e, n, dict(m))))
    return result, progress, time.process_time() - cpu0, tmp


def test_tiny_training_reports_progress_and_exports(tiny_run):
    result, progress, cpu_seconds, tmp = tiny_run
    # CPU seconds of the work (wall time on the shared 2-core machine depends on the neighbours)
    assert cpu_seconds < 60
    assert [(e, n) for e, n, _ in progress] == [(1, 1)]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(progress[0][2])
    path = Path(result["export_path"])
    assert path == tmp / "models" / "hemovision" / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    for m in ("val", "test"):
        assert {"accuracy", "macro_f1", "ece_before", "ece_after", "balanced_accuracy"} <= set(result["metrics"][m])
    assert (Path(result["out_dir"]) / "report" / "confusion_matrix.png").is_file()
    assert (Path(result["out_dir"]) / "checkpoints" / "last.keras").is_file()


def test_exported_metadata(tiny_run):
    result, *_ = tiny_run
    meta = json.loads((Path(result["export_path"]) / "assets.extra" / "hemovision.json").read_text())
    assert meta["model_name"] == "hemovision" and meta["version"] == 1
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["input_size"] == 64 and meta["preprocessing"]["input_size"] == 64
    for k in ("temperature", "review_threshold", "ood_threshold", "data_hash", "created_at", "training"):
        assert k in meta
    assert meta["data_hash"].startswith("sha256:")
    assert {"test", "val"} <= set(meta["metrics"])
    from hemovision_pixels import PreprocessSpec
    PreprocessSpec.from_dict(meta["preprocessing"])


def test_both_signatures_and_warmup(tiny_run):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    result, *_ = tiny_run
    path = Path(result["export_path"])
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "explain"}
    x = tf.random.normal((3, 64, 64, 3))
    out = loaded.signatures["serving_default"](image=x)
    assert set(out) == {"probabilities", "logits", "ood_score"}
    assert out["probabilities"].shape == (3, 8) and out["logits"].shape == (3, 8) and out["ood_score"].shape == (3,)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, atol=1e-5)
    t = result["temperature"]
    np.testing.assert_allclose(out["probabilities"].numpy(), tf.nn.softmax(out["logits"] / t).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["ood_score"].numpy(), -tf.reduce_logsumexp(out["logits"], -1).numpy(), atol=1e-4)
    ex = loaded.signatures["explain"](image=x)
    assert set(ex) == {"probabilities", "heatmap", "logits"}
    h = ex["heatmap"].numpy()
    assert h.shape == (3, 64, 64) and h.min() >= 0.0 and h.max() <= 1.0
    np.testing.assert_allclose(ex["probabilities"].numpy(), out["probabilities"].numpy(), atol=1e-5)
    n = 0
    for raw in tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests")):
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        req = log.predict_log.request
        assert req.model_spec.name == "hemovision"
        assert req.model_spec.signature_name in ("serving_default", "explain")
        assert list(tf.make_ndarray(req.inputs["image"]).shape[1:]) == [64, 64, 3]
        n += 1
    assert n >= 2



def test_export_writes_the_drift_reference_serving_would_compute(tiny_run):
    """hemovision.json["drift_reference"] (from the val logits at export) equals the reference the
    registration path computes by running the same val images through the exported SavedModel."""
    from hemovision_contracts import drift

    from hemovision_training.ml import drift_reference as dr
    from hemovision_training.ml.data import decode_files, load_index

    result, *_ = tiny_run
    path = Path(result["export_path"])
    written = dr.read_reference(path)
    assert written is not None and drift.validate_reference(written) is written
    meta = json.loads((path / "assets.extra" / "hemovision.json").read_text())
    assert meta["drift_reference"] == written and not (path / "assets.extra" / dr.SIDECAR_FILE).exists()
    # the tiny run's val images (limit_per_class=4, the config's seed), in the order it evaluated them
    records = [r for r in load_index(PBC, limit_per_class=4, seed=TrainConfig.seed, check_files=False)
               if r.split == "val"]
    probs, ood = dr.model_outputs(path, decode_files(PBC, records))
    served = dr.reference_from_outputs(probs, ood, source=written["source"])
    assert written["n"] == len(records) == 32
    for name in ("class_mix", "confidence"):
        assert written["components"][name] == served["components"][name]
    np.testing.assert_allclose(written["components"]["ood_score"]["edges"],
                               served["components"]["ood_score"]["edges"], atol=1e-3)
