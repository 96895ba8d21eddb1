"""A tiny SavedModel that follows the HemoVision SavedModel contract, for tests and benches.

    build_contract_model(path, input_size=32, seed=0)

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

CLASS_NAMES = [
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature_granulocyte",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
]


def build_contract_model(
    path: str | os.PathLike[str],
    *,
    input_size: int = 32,
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
            self.dense = tf.Variable(rng.normal(0, 0.5, (8, 8)).astype("float32"))
            self.bias = tf.Variable(rng.normal(0, 0.1, (8,)).astype("float32"))
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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelServerProcess:
    """The embedded model server as a real child process (`python -m hemovision_inference model-server`).

    kill() sends SIGKILL; start() again reuses the same ports."""

    def __init__(self, model_base: str | os.PathLike[str], *, port: int | None = None, rest_port: int = -1, **env: str) -> None:
        self.model_base = str(model_base)
        self.port = port or free_port()
        self.rest_port = rest_port
        self.env = {k: str(v) for k, v in env.items()}
        self.process = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import subprocess
        import sys

        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "HV_MODEL_SERVER_HOST": "127.0.0.1",
            "HV_MODEL_SERVER_PORT": str(self.port),
            "HV_MODEL_SERVER_REST_PORT": str(self.rest_port),
            "HV_MODEL_SERVER_MODEL_BASE": self.model_base,
            "HV_MODEL_SERVER_POLL_INTERVAL_S": "0.3",
            "HV_MODEL_SERVER_LOG_LEVEL": "WARNING",
            **self.env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hemovision_inference", "model-server"], env=env, stdin=subprocess.DEVNULL
        )

    async def wait_ready(self, timeout: float = 120.0) -> None:
        from hemovision_grpc_server import wait_for_health

        await wait_for_health(self.address, "", timeout=timeout)

    def kill(self) -> None:
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        import signal
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_bytes(self) -> int:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss if self.process else 0


class FakeRegistry:
    """A tiny TrainingService answering GetActiveModelVersion and GetOrganizationModel (for tests
    behind our interface). `organizations` maps an organization id to its active adapted version;
    the caller's organization is read from its bearer token's `org` claim (not verified here: the
    tests mint the tokens). `down = True` answers UNAVAILABLE to everything (an outage)."""

    def __init__(self, active: int | None = None, organizations: dict[str, int] | None = None) -> None:
        self.active = active
        self.organizations: dict[str, int] = dict(organizations or {})
        self.down = False
        self.org_calls: dict[str, int] = {}
        self.server = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        import base64
        import json

        import grpc

        from hemovision.training.v1 import training_pb2, training_pb2_grpc

        registry = self

        def organization(context) -> str:
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    payload = value.split(" ", 1)[1].split(".")[1]
                    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["org"]
            return ""

        class Servicer(training_pb2_grpc.TrainingServiceServicer):
            async def GetActiveModelVersion(self, request, context):
                if registry.down:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "registry down")
                if registry.active is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no active version")
                return training_pb2.ModelVersion(name=request.model_name or "hemovision", version=registry.active)

            async def GetOrganizationModel(self, request, context):
                if registry.down:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "registry down")
                org = organization(context)
                if not org:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")
                registry.org_calls[org] = registry.org_calls.get(org, 0) + 1
                if registry.active is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no active version")
                adapted = registry.organizations.get(org)
                return training_pb2.OrganizationModel(
                    organization_id=org, model_name=request.model_name or "hemovision",
                    version=adapted or registry.active, adapted=adapted is not None,
                    platform_version=registry.active,
                )

        self.server = grpc.aio.server()
        training_pb2_grpc.add_TrainingServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
