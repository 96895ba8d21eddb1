"""numpy <-> tensorflow.TensorProto without a TF session: the tensor wire format of TF Serving's
Predict API. Both sides use it: the inference service (client) and the embedded model server.

Numeric arrays travel as little-endian `tensor_content` (one bytes copy, no per-value fields);
decoding also accepts the per-value fields and TF's one-value "splat" encoding.
"""

from __future__ import annotations

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

__all__ = ["TensorError", "from_tensor_proto", "to_tensor_proto"]

_NP_TO_TF: dict[np.dtype, int] = {
    np.dtype("float32"): types_pb2.DT_FLOAT,
    np.dtype("float64"): types_pb2.DT_DOUBLE,
    np.dtype("int32"): types_pb2.DT_INT32,
    np.dtype("int64"): types_pb2.DT_INT64,
    np.dtype("uint8"): types_pb2.DT_UINT8,
    np.dtype("bool"): types_pb2.DT_BOOL,
}
_TF_TO_NP: dict[int, np.dtype] = {v: k for k, v in _NP_TO_TF.items()}
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

