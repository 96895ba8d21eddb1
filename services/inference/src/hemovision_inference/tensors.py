"""numpy <-> tensorflow.TensorProto and numpy <-> hemovision.common.v1.Tensor, without a TF session.

Both servers use these: the model server for Predict inputs/outputs, the inference
service for the common Tensor <-> TensorProto conversion.
"""

from __future__ import annotations

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from hemovision.common.v1 import common_pb2

_NP_TO_TF = {
    np.dtype("float32"): types_pb2.DT_FLOAT,
    np.dtype("float64"): types_pb2.DT_DOUBLE,
    np.dtype("int32"): types_pb2.DT_INT32,
    np.dtype("int64"): types_pb2.DT_INT64,
    np.dtype("uint8"): types_pb2.DT_UINT8,
    np.dtype("bool"): types_pb2.DT_BOOL,
}
_TF_TO_NP = {v: k for k, v in _NP_TO_TF.items()}
_VAL_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
}


class TensorError(ValueError):
    """A tensor that cannot be converted (unsupported dtype, wrong byte length)."""


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    array = np.asarray(array)
    if array.dtype.kind in "USO":
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
        proto.tensor_shape.CopyFrom(_shape(array.shape))
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
        return proto
    dtype = _NP_TO_TF.get(array.dtype)
    if dtype is None:
        raise TensorError(f"unsupported dtype {array.dtype}")
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=_shape(array.shape))
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.dtype == types_pb2.DT_STRING:
        return np.array(list(proto.string_val), dtype=object).reshape(shape)
    np_dtype = _TF_TO_NP.get(proto.dtype)
    if np_dtype is None:
        raise TensorError(f"unsupported TensorProto dtype {types_pb2.DataType.Name(proto.dtype)}")
    count = int(np.prod(shape)) if shape else 1
    if proto.tensor_content:
        if len(proto.tensor_content) != count * np_dtype.itemsize:
            raise TensorError("tensor_content length does not match the shape")
        return np.frombuffer(proto.tensor_content, dtype=np_dtype.newbyteorder("<")).astype(np_dtype).reshape(shape)
    values = np.asarray(getattr(proto, _VAL_FIELD[proto.dtype]), dtype=np_dtype)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 1:  # TF's "splat" encoding
        return np.full(shape, values[0], dtype=np_dtype)
    if values.size == 0:
        return np.zeros(shape, dtype=np_dtype)
    raise TensorError("number of values does not match the shape")


def _shape(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape])


_COMMON_TO_NP = {common_pb2.DTYPE_FLOAT32: np.dtype("<f4"), common_pb2.DTYPE_UINT8: np.dtype("u1")}


def from_common_tensor(tensor: common_pb2.Tensor) -> np.ndarray:
    dtype = _COMMON_TO_NP.get(tensor.dtype)
    if dtype is None:
        raise TensorError("tensor dtype must be DTYPE_FLOAT32 or DTYPE_UINT8")
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise TensorError("tensor shape must not be negative")
    if len(tensor.data) != int(np.prod(shape)) * dtype.itemsize:
        raise TensorError(f"tensor data has {len(tensor.data)} bytes, shape {shape} needs {int(np.prod(shape)) * dtype.itemsize}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def to_common_tensor(array: np.ndarray) -> common_pb2.Tensor:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return common_pb2.Tensor(shape=list(array.shape), dtype=common_pb2.DTYPE_FLOAT32, data=array.astype("<f4").tobytes())


def common_to_tensor_proto(tensor: common_pb2.Tensor) -> tensor_pb2.TensorProto:
    """Direct bytes copy (no numpy round trip): common Tensor float32 -> TensorProto DT_FLOAT."""
    array = from_common_tensor(tensor)
    if array.dtype != np.float32:
        array = array.astype(np.float32)
        return to_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_shape(tuple(tensor.shape)))
    proto.tensor_content = tensor.data
    return proto
