"""Finding, checking, loading and warming up SavedModel versions (TF Serving's layout)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemovision_tensor_proto import from_tensor_proto

log = logging.getLogger(__name__)

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """Numeric subdirectories (TF Serving skips anything else, dot-dirs included)."""
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(model_dir))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.isdigit() or not entry.is_dir():
            continue
        found[int(entry.name)] = Path(entry.path)
    return found


def incomplete_reason(path: Path) -> str | None:
    """None when `path` holds a complete SavedModel, else why not."""
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        return "saved_model.pb missing"
    if not (path / "variables" / "variables.index").is_file():
        return "variables/variables.index missing"
    for root, dirs, files in os.walk(path):
        if any(name == ".tmp" or name.endswith(".tmp") for name in [*files, *dirs]):
            return f".tmp marker in {root}"
    return None


def fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime) of every file: equal across two polls = stable."""
    items = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue
            items.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(items))


def dir_size(path: Path) -> int:
    return sum(size for _rel, size, _mtime in fingerprint(path))


@dataclass
class Signature:
    name: str
    function: Any  # a loaded ConcreteFunction
    inputs: dict[str, tuple[np.dtype, tuple[int | None, ...]]]
    outputs: list[str]


@dataclass
class LoadedVersion:
    """One loaded servable: the SavedModel object, its signatures, its in-flight count."""

    name: str
    version: int
    path: Path
    saved_model: Any
    signatures: dict[str, Signature]
    signature_defs: Any  # tensorflow.core.protobuf.meta_graph_pb2 signature_def map (SignatureDefMap-compatible)
    size_bytes: int
    inflight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self) -> None:
        with self._lock:
            self.inflight += 1

    def release(self) -> None:
        with self._lock:
            self.inflight -= 1

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls the compiled signature function (graph mode, never eager Keras)."""
        import tensorflow as tf

        sig = self.signatures[signature]
        result = sig.function(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in result.items()}


def load_version(name: str, version: int, path: Path) -> LoadedVersion:
    """Loads a SavedModel version (blocking; call from a worker thread)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    size = dir_size(path)
    saved = tf.saved_model.load(str(path))
    proto = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    if pb.is_file():
        proto.ParseFromString(pb.read_bytes())
    signature_defs = {
        k: v for k, v in (proto.meta_graphs[0].signature_def.items() if proto.meta_graphs else []) if not k.startswith("__")
    }
    signatures: dict[str, Signature] = {}
    for sig_name, fn in saved.signatures.items():
        _args, kwargs = fn.structured_input_signature
        inputs = {
            key: (np.dtype(spec.dtype.as_numpy_dtype), tuple(spec.shape.as_list()))
            for key, spec in kwargs.items()
        }
        outputs = sorted(fn.structured_outputs.keys())
        signatures[sig_name] = Signature(sig_name, fn, inputs, outputs)
    if not signatures:
        raise ValueError("SavedModel has no signatures")
    return LoadedVersion(name, version, path, saved, signatures, signature_defs, size)


def warmup_requests(path: Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(signature, inputs) of each PredictLog in assets.extra/tf_serving_warmup_requests."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    file = path / WARMUP_FILE
    if not file.is_file():
        return []
    requests = []
    for i, record in enumerate(tf.data.TFRecordDataset(str(file)).as_numpy_iterator()):
        if i >= MAX_WARMUP_RECORDS:
            break
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        if not entry.HasField("predict_log"):
            continue
        request = entry.predict_log.request
        inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
        requests.append((request.model_spec.signature_name or "serving_default", inputs))
    return requests


def warm_up(loaded: LoadedVersion, batch_sizes: tuple[int, ...] = ()) -> int:
    """Runs the warmup records (every signature once at batch 1 if there are none), then
    `serving_default` at each padded batch size so that no shape is first seen under traffic."""
    runs = 0
    requests = warmup_requests(loaded.path)
    for signature, inputs in requests:
        loaded.run(signature, inputs)
        runs += 1
    if not requests:
        for sig in loaded.signatures.values():
            inputs = {
                k: np.zeros([1 if d is None else d for d in shape], dtype=dtype) for k, (dtype, shape) in sig.inputs.items()
            }
            loaded.run(sig.name, inputs)
            runs += 1
    sig = loaded.signatures.get("serving_default")
    if sig is not None:
        for size in batch_sizes:
            inputs = {
                k: np.zeros([size, *[1 if d is None else d for d in shape[1:]]], dtype=dtype)
                for k, (dtype, shape) in sig.inputs.items()
            }
            loaded.run(sig.name, inputs)
            runs += 1
    return runs
