"""hemovision.common.v1.Tensor <-> numpy, the one codec every service uses (little-endian,
row-major bytes; float32 or uint8). TF Serving's TensorProto has its own codec beside the
model-server client."""

from __future__ import annotations

import numpy as np

from hemovision.common.v1 import common_pb2

_DTYPES: dict[int, np.dtype] = {common_pb2.DTYPE_FLOAT32: np.dtype("<f4"), common_pb2.DTYPE_UINT8: np.dtype("u1")}


class TensorError(ValueError):
    """A tensor that cannot be decoded (unknown dtype, negative shape, wrong byte length)."""


def from_common_tensor(tensor: common_pb2.Tensor) -> np.ndarray:
    """A read-only view of the tensor's bytes (no copy)."""
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise TensorError("tensor dtype must be DTYPE_FLOAT32 or DTYPE_UINT8")
    shape = [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise TensorError("tensor shape must not be negative")
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(f"tensor data has {len(tensor.data)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def to_common_tensor(array: np.ndarray) -> common_pb2.Tensor:
    """uint8 arrays stay uint8; everything else is sent as float32."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return common_pb2.Tensor(shape=list(array.shape), dtype=common_pb2.DTYPE_UINT8,
                                 data=np.ascontiguousarray(array).tobytes())
    return common_pb2.Tensor(shape=list(array.shape), dtype=common_pb2.DTYPE_FLOAT32,
                             data=np.ascontiguousarray(array, dtype="<f4").tobytes())
