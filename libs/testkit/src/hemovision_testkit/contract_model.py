"""A tiny SavedModel that follows the HemoVision SavedModel contract, for the tests of the model
server and of the inference service (needs the `models` extra: TensorFlow).

    build_contract_model(path, input_size=INPUT_SIZE, seed=0)

writes `path/` (saved_model.pb, variables/, assets.extra/hemovision.json,
assets.extra/tf_serving_warmup_requests) with the signatures `serving_default`
(image -> probabilities, logits, ood_score) and `explain` (image -> probabilities,
heatmap, logits), exactly as the training service exports the real model.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from hemovision_contracts.classes import CLASS_NAMES as PLATFORM_CLASS_NAMES

INPUT_SIZE = 32  # pixels per side: tiny, so that tests build and serve it quickly
# The platform's label set, as the training service writes it into hemovision.json.
CLASS_NAMES = list(PLATFORM_CLASS_NAMES)


def build_contract_model(
    path: str | os.PathLike[str],
    *,
    input_size: int = INPUT_SIZE,
    seed: int = 0,
    temperature: float = 1.0,
    review_threshold: float = 0.5,
    ood_threshold: float = 5.0,
    version: int = 1,
) -> Path:
    """Builds the tiny contract model into `path` (replaced if it exists) and returns it."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    out = Path(path)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(seed)
    s = input_size

    class ContractModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = tf.Variable(rng.normal(0, 0.3, (3, 3, 3, 8)).astype("float32"))
            self.dense = tf.Variable(rng.normal(0, 0.5, (8, len(CLASS_NAMES))).astype("float32"))
            self.bias = tf.Variable(rng.normal(0, 0.1, (len(CLASS_NAMES),)).astype("float32"))
            self.temperature = tf.Variable(float(temperature), trainable=False)

        def _features(self, image: tf.Tensor) -> tf.Tensor:
            return tf.nn.relu(tf.nn.conv2d(image, self.conv, strides=1, padding="SAME"))

        def _head(self, features: tf.Tensor) -> tf.Tensor:
            return tf.matmul(tf.reduce_mean(features, axis=[1, 2]), self.dense) + self.bias

        @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.float32, name="image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = self._head(self._features(image))
            return {
                "probabilities": tf.nn.softmax(logits / self.temperature),
                "logits": logits,
                # Energy score: higher = less like the training data.
                "ood_score": -tf.reduce_logsumexp(logits, axis=-1),
            }

        @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.float32, name="image")])
        def explain(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            features = self._features(image)
            with tf.GradientTape() as tape:
                tape.watch(features)
                logits = self._head(features)
                top = tf.reduce_max(logits, axis=-1)
            grads = tape.gradient(top, features)
            weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
            cam = cam / (tf.reduce_max(cam, axis=[1, 2], keepdims=True) + 1e-8)
            return {
                "probabilities": tf.nn.softmax(logits / self.temperature),
                "heatmap": cam,
                "logits": logits,
            }

    module = ContractModel()
    tf.saved_model.save(
        module, str(out), signatures={"serving_default": module.serve, "explain": module.explain}
    )
    extra = out / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    meta = {
        "model_name": "hemovision",
        "version": version,
        "class_names": CLASS_NAMES,
        "input_size": s,
        "preprocessing": {
            "version": 1,
            "input_size": s,
            "crop": "center_square",
            "stain_normalization": None,
            "clahe": {"clip_limit": 2.0, "tiles": 8},
            "blur_sigma": 0.0,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
        },
        "temperature": temperature,
        "review_threshold": review_threshold,
        "ood_score": "negative free energy -logsumexp(logits); flag when > ood_threshold",
        "ood_threshold": ood_threshold,
        "metrics": {"accuracy": 0.125},
        "created_at": datetime.now(UTC).isoformat(),
    }
    (extra / "hemovision.json").write_text(json.dumps(meta, indent=2))
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for signature in ("serving_default", "explain"):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name="hemovision", signature_name=signature)
            )
            request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, s, s, 3), np.float32)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return out


def publish_version(src: str | os.PathLike[str], model_base: str | os.PathLike[str], version: int, name: str = "hemovision") -> Path:
    """Copies a SavedModel in as <model_base>/<name>/<version> atomically (temp dot-dir, then rename),
    the way the training service exports."""
    target_dir = Path(model_base) / name
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f".tmp-{version}"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    os.rename(tmp, target_dir / str(version))
    return target_dir / str(version)
