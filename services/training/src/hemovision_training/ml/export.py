"""SavedModel export (TF Serving layout) and atomic publication.

``<model_base>/<model_name>/<version>/``:
  saved_model.pb, variables/, assets.extra/{hemovision.json, tf_serving_warmup_requests}

Signatures (input key ``image``: float32 [None,S,S,3], the preprocess output):
  serving_default -> probabilities [None,8] (softmax(logits/T)), logits [None,8], ood_score [None]
  explain         -> probabilities [None,8], heatmap [None,S,S] (Grad-CAM, top class), logits [None,8]

Grad-CAM is computed forward-only (``analytic``) when every Grad-CAM map reaches the logits only through
GlobalAveragePooling2D -> (Dropout) -> linear Dense [-> Average]; otherwise with a GradientTape.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .data import CLASS_NAMES

METADATA_FILE = "hemovision.json"
WARMUP_FILE = "tf_serving_warmup_requests"


GRADCAM_METHODS = ("auto", "tape")
GRADCAM_ANALYTIC = "analytic (exact for GAP->Dense heads)"
GRADCAM_TAPE = "gradient tape"


def analytic_cam_heads(model, layer_names: list[str]) -> list[tuple[Any, float]] | None:
    """For each Grad-CAM layer, (its head's Dense layer, 1/M) if the model's single output (the logits)
    depends on that layer's map A only through GlobalAveragePooling2D -> (Dropout) -> linear Dense, that
    Dense being the output or one of the M inputs of an Average that is the output; else None.

    Then d logit_c / d A[n,i,j,k] = W[k,c] / (M h w) at every position, so Grad-CAM's channel weights
    are exactly that and Grad-CAM equals the forward-only CAM relu(A @ W[:,c]) / (M h w)."""
    import keras
    from keras import layers as L

    def single_consumer(tensor, consumers):
        users = consumers.get(id(tensor), [])
        return users[0] if len(users) == 1 else None

    try:
        if len(model.outputs) != 1:
            return None
        logits = model.outputs[0]
        consumers: dict[int, list] = {}
        for layer in model.layers:
            if isinstance(layer, L.InputLayer):
                continue
            for t in keras.tree.flatten(layer.input):  # raises for a layer called more than once
                consumers.setdefault(id(t), []).append(layer)
        heads = []
        for name in layer_names:
            feat = model.get_layer(name).output
            if len(feat.shape) != 4:
                return None
            gap = single_consumer(feat, consumers)  # the map feeds nothing but the pooling
            if not (isinstance(gap, L.GlobalAveragePooling2D) and gap.data_format == "channels_last"
                    and not gap.keepdims):
                return None
            nxt = single_consumer(gap.output, consumers)
            if isinstance(nxt, L.Dropout):  # identity at inference (training=False)
                nxt = single_consumer(nxt.output, consumers)
            if not (isinstance(nxt, L.Dense) and nxt.activation is keras.activations.linear):
                return None
            dense = nxt
            if dense.output is logits:
                heads.append((dense, 1.0))
                continue
            avg = single_consumer(dense.output, consumers)
            if not (isinstance(avg, L.Average) and avg.output is logits):
                return None
            inputs = keras.tree.flatten(avg.input)
            heads.append((dense, sum(t is dense.output for t in inputs) / len(inputs)))
        return heads
    except Exception:  # anything unexpected in the graph: take the general (tape) path
        return None


def build_serving_module(keras_model, *, input_size: int, temperature: float, gradcam_layer: str | None = None,
                         gradcam: str = "auto"):
    """A tf.Module with the two signature functions (Grad-CAM inside the graph).

    ``gradcam``: "auto" = forward-only Grad-CAM where exact (see ``analytic_cam_heads``), else the
    GradientTape; "tape" = always the GradientTape. ``module.gradcam_method`` says which was built."""
    import keras
    import tensorflow as tf

    from .model import FEATURES_LAYER, gradcam_model

    if gradcam not in GRADCAM_METHODS:
        raise ValueError(f"gradcam must be one of {GRADCAM_METHODS}, not {gradcam!r}")
    # fresh copy of the network without optimizer state
    clone = keras.models.clone_model(keras_model)
    clone.set_weights(keras_model.get_weights())
    names = [n.strip() for n in (gradcam_layer or FEATURES_LAYER).split(",")]
    cam_model = gradcam_model(clone, names)
    heads = analytic_cam_heads(clone, names) if gradcam == "auto" else None

    module = tf.Module()
    module.model = cam_model
    module.gradcam_method = GRADCAM_ANALYTIC if heads else GRADCAM_TAPE
    module.temperature = tf.Variable(float(temperature), trainable=False, dtype=tf.float32, name="temperature")
    spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32, name="image")

    def _forward(image):
        return cam_model(image, training=False)[-1]

    @tf.function(input_signature=[spec])
    def serve(image):
        logits = _forward(image)
        probs = tf.nn.softmax(logits / module.temperature, axis=-1)
        ood = -tf.reduce_logsumexp(logits, axis=-1)  # negative free energy: higher = less in-distribution
        return {"probabilities": tf.identity(probs, name="probabilities"),
                "logits": tf.identity(logits, name="logits"),
                "ood_score": tf.identity(ood, name="ood_score")}

    def _tape_cams(image):
        with tf.GradientTape() as tape:
            *feats, logits = cam_model(image, training=False)
            tape.watch(feats)
            top = tf.argmax(logits, axis=-1, output_type=tf.int32)
            score = tf.gather(logits, top, axis=1, batch_dims=1)
        grads = tape.gradient(score, feats)                      # per map: [N,h,w,C]
        cams = []
        for f, g in zip(feats, grads):
            weights = tf.reduce_mean(g, axis=[1, 2], keepdims=True)
            cams.append(tf.nn.relu(tf.reduce_sum(weights * f, axis=-1, keepdims=True)))
        return cams, logits

    def _analytic_cams(image):
        # GAP -> Dense head: the gradient is W[:,c] / (M h w) everywhere, so no backward pass is needed
        *feats, logits = cam_model(image, training=False)
        top = tf.argmax(logits, axis=-1, output_type=tf.int32)
        cams = []
        for f, (dense, scale) in zip(feats, heads):
            hw = tf.cast(tf.shape(f)[1] * tf.shape(f)[2], f.dtype)
            per_class = tf.tensordot(f, tf.convert_to_tensor(dense.kernel), axes=1)  # [N,h,w,classes]
            c = tf.gather(per_class, top, axis=3, batch_dims=1) * (scale / hw)     # [N,h,w]
            cams.append(tf.nn.relu(c)[..., None])
        return cams, logits

    @tf.function(input_signature=[spec])
    def explain(image):
        cams, logits = (_analytic_cams if heads else _tape_cams)(image)
        # one Grad-CAM per feature map (one per ensemble member), each upsampled, then summed
        cam = 0.0
        for c in cams:
            cam += tf.image.resize(c, [input_size, input_size], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        probs = tf.nn.softmax(logits / module.temperature, axis=-1)
        return {"probabilities": tf.identity(probs, name="probabilities"),
                "heatmap": tf.clip_by_value(cam, 0.0, 1.0, name="heatmap"),
                "logits": tf.identity(logits, name="logits")}

    module.serve = serve
    module.explain = explain
    return module


def _warmup_records(path: Path, model_name: str, input_size: int) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as w:
        for sig, n in (("serving_default", 1), ("serving_default", 8), ("explain", 1)):
            req = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=sig))
            x = rng.standard_normal((n, input_size, input_size, 3)).astype(np.float32)
            req.inputs["image"].CopyFrom(tf.make_tensor_proto(x))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
            w.write(log.SerializeToString())


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def export_model(keras_model, *, spec: dict[str, Any], temperature: float, review_threshold: float,
                 ood_threshold: float, metrics: dict[str, Any], training_info: dict[str, Any], data_hash: str,
                 model_base: str | os.PathLike, model_name: str = "hemovision", version: int | None = None,
                 replace: bool = False, gradcam_layer: str | None = None, gradcam: str = "auto",
                 organization_id: str | None = None, drift_reference: dict[str, Any] | None = None) -> Path:
    """Export and publish ``<model_base>/<model_name>/<version>`` atomically; returns its path.

    The SavedModel is written to ``<model_base>/<model_name>/.tmp-<version>-<uuid>`` (hidden from
    servers, which only load numeric directories), fsynced, then renamed into place.
    ``version`` defaults to max existing + 1. An existing version is an error unless
    ``replace`` (used for the shipped default): the old directory is renamed away first.
    ``organization_id``: an adapted version's organization, written into hemovision.json so a
    model server or registry that reads only the files still knows whose version it is.
    ``drift_reference``: the version's answers on PBC val as histograms
    (``ml.drift_reference.reference_from_logits``), written as hemovision.json["drift_reference"].
    """
    import tensorflow as tf

    input_size = int(spec["input_size"])
    model_dir = Path(model_base) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = (max(existing_versions(model_dir), default=0)) + 1
    version = int(version)
    if version < 1:
        raise ValueError("version must be >= 1")
    target = model_dir / str(version)
    if target.exists() and not replace:
        raise FileExistsError(f"model version already exists: {target}")
    tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex}"
    try:
        module = build_serving_module(keras_model, input_size=input_size, temperature=temperature,
                                      gradcam_layer=gradcam_layer, gradcam=gradcam)
        tf.saved_model.save(module, str(tmp), signatures={
            "serving_default": module.serve.get_concrete_function(),
            "explain": module.explain.get_concrete_function(),
        })
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        meta = {
            "model_name": model_name,
            "version": version,
            "class_names": list(CLASS_NAMES),
            "input_size": input_size,
            "preprocessing": spec,
            "temperature": float(temperature),
            "review_threshold": float(review_threshold),
            "ood_threshold": float(ood_threshold),
            "ood_score": "negative free energy -logsumexp(logits); flag when > ood_threshold "
                         "(99th percentile on the validation split)",
            "gradcam_layer": gradcam_layer or "features",
            "gradcam_method": module.gradcam_method,
            "signatures": {
                "serving_default": {"inputs": {"image": [None, input_size, input_size, 3]},
                                    "outputs": {"probabilities": [None, 8], "logits": [None, 8],
                                                "ood_score": [None]}},
                "explain": {"inputs": {"image": [None, input_size, input_size, 3]},
                            "outputs": {"probabilities": [None, 8], "heatmap": [None, input_size, input_size],
                                        "logits": [None, 8]}},
            },
            "metrics": metrics,
            "training": training_info,
            "data_hash": data_hash,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if organization_id:
            meta["organization_id"] = organization_id
        if drift_reference is not None:
            meta["drift_reference"] = drift_reference
        (extra / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        _warmup_records(extra / WARMUP_FILE, model_name, input_size)
        _fsync_tree(tmp)
        if target.exists():
            old = model_dir / f".old-{version}-{uuid.uuid4().hex}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_metadata(version_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(version_dir) / "assets.extra" / METADATA_FILE).read_text())


def export_run(run_dir: str | os.PathLike, *, model_base: str | os.PathLike, model_name: str = "hemovision",
               version: int | None = None, replace: bool = False, gradcam_layer: str | None = None) -> Path:
    """Export a finished training run (``<run>/final.keras`` + ``<run>/result.json``)."""
    import keras

    run = Path(run_dir)
    result = json.loads((run / "result.json").read_text())
    model = keras.models.load_model(run / "final.keras", compile=False)
    reference = None
    if (run / "logits.npz").is_file():
        from .drift_reference import reference_from_logits

        val_logits = np.load(run / "logits.npz")["val_logits"]
        reference = reference_from_logits(val_logits, result["temperature"],
                                          source=f"PBC val ({len(val_logits)} cells), at export")
    return export_model(model, spec=result["spec"], temperature=result["temperature"],
                        review_threshold=result["review_threshold"], ood_threshold=result["ood_threshold"],
                        metrics=result["metrics"], training_info=result["training_info"],
                        data_hash=result["data_hash"], model_base=model_base, model_name=model_name,
                        version=version, replace=replace,
                        gradcam_layer=gradcam_layer or result.get("gradcam_layer"), drift_reference=reference)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hemovision_training.ml.export",
                                 description="Export a finished training run as a TF Serving version.")
    ap.add_argument("--run", required=True, help="training output folder (final.keras, result.json)")
    ap.add_argument("--model-base", required=True)
    ap.add_argument("--model-name", default="hemovision")
    ap.add_argument("--version", type=int)
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--gradcam-layer", help="layer whose feature map Grad-CAM uses (default: last conv block)")
    a = ap.parse_args(argv)
    print(export_run(a.run, model_base=a.model_base, model_name=a.model_name, version=a.version, replace=a.replace,
                     gradcam_layer=a.gradcam_layer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
