"""The Predict data plane shared by the gRPC and REST front ends."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hemovision_model_server.batching import BatchScheduler, QueueFull
from hemovision_model_server.manager import LookupFailed, ModelManager
from hemovision_model_server.metrics import ModelServerMetrics


@dataclass
class PredictResult:
    name: str
    version: int
    signature: str
    outputs: dict[str, np.ndarray]


class PredictFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # grpc.StatusCode name
        self.message = message


class Predictor:
    def __init__(self, manager: ModelManager, batcher: BatchScheduler, metrics: ModelServerMetrics) -> None:
        self.manager = manager
        self.batcher = batcher
        self.metrics = metrics

    async def predict(
        self,
        *,
        name: str,
        version: int | None,
        label: str | None,
        signature: str,
        inputs: dict[str, np.ndarray],
        output_filter: list[str] | None = None,
        api: str = "grpc",
    ) -> PredictResult:
        signature = signature or "serving_default"
        started = time.perf_counter()
        version_label = "?"
        code = "OK"
        try:
            try:
                servable = self.manager.resolve(name, version, label)
            except LookupFailed as exc:
                raise PredictFailed(exc.code, exc.message) from None
            version_label = str(servable.version)
            servable.acquire()
            try:
                sig = servable.signatures.get(signature)
                if sig is None:
                    raise PredictFailed(
                        "INVALID_ARGUMENT",
                        f"Serving signature name: {signature!r} not found in signature def; "
                        f"available: {sorted(servable.signatures)}",
                    )
                prepared = _check_inputs(sig.inputs, inputs)
                if output_filter:
                    unknown = [k for k in output_filter if k not in sig.outputs]
                    if unknown:
                        raise PredictFailed("INVALID_ARGUMENT", f"output tensor alias not found in signature: {unknown}")
                try:
                    outputs = await self.batcher.run(servable, signature, prepared)
                except QueueFull as exc:
                    raise PredictFailed("RESOURCE_EXHAUSTED", str(exc)) from None
                except Exception as exc:  # noqa: BLE001 - TF op errors are the caller's input
                    raise PredictFailed("INVALID_ARGUMENT", f"{type(exc).__name__}: {str(exc)[:300]}") from None
            finally:
                servable.release()
            if output_filter:
                outputs = {k: v for k, v in outputs.items() if k in output_filter}
            return PredictResult(name, servable.version, signature, outputs)
        except PredictFailed as exc:
            code = exc.code
            raise
        finally:
            self.manager.last_request = time.monotonic()
            self.metrics.requests.labels(name, version_label, signature, api, code).inc()
            if code == "OK":
                self.metrics.latency.labels(name, version_label, signature).observe(time.perf_counter() - started)


def _check_inputs(
    spec: dict[str, tuple[np.dtype, tuple[int | None, ...]]], inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    if set(inputs) != set(spec):
        raise PredictFailed(
            "INVALID_ARGUMENT", f"input keys {sorted(inputs)} do not match the signature's inputs {sorted(spec)}"
        )
    prepared = {}
    for key, (dtype, shape) in spec.items():
        value = np.asarray(inputs[key])
        if value.dtype != dtype:
            if value.dtype.kind in "fiu" and dtype.kind in "fiu":
                value = value.astype(dtype)
            else:
                raise PredictFailed("INVALID_ARGUMENT", f"input {key!r}: expected {dtype}, got {value.dtype}")
        if len(value.shape) != len(shape) or any(
            want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
        ):
            raise PredictFailed(
                "INVALID_ARGUMENT",
                f"input {key!r}: shape {list(value.shape)} does not match {[d if d is not None else -1 for d in shape]}",
            )
        prepared[key] = value
    return prepared
