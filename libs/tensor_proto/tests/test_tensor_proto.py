"""The TF Serving tensor codec against TensorFlow's own (tf.make_tensor_proto / tf.make_ndarray)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from hemovision_tensor_proto import TensorError, from_tensor_proto, to_tensor_proto


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "uint8", "bool"])
def test_round_trip_and_tensorflow_reads_what_we_write(dtype) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    proto = to_tensor_proto(array)
    assert from_tensor_proto(proto).dtype == array.dtype
    np.testing.assert_array_equal(from_tensor_proto(proto), array)
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)


def test_reads_what_tensorflow_writes_including_splat_and_strings() -> None:
    array = np.random.default_rng(0).random((3, 5), dtype=np.float32)
    np.testing.assert_array_equal(from_tensor_proto(tf.make_tensor_proto(array)), array)
    splat = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[2.5])
    splat.tensor_shape.dim.add(size=4)
    np.testing.assert_array_equal(from_tensor_proto(splat), np.full(4, 2.5, np.float32))
    strings = from_tensor_proto(tf.make_tensor_proto(np.array([b"a", b"bc"])))
    assert list(strings) == [b"a", b"bc"]


def test_refuses_a_wrong_length_and_an_unsupported_dtype() -> None:
    proto = to_tensor_proto(np.zeros((2, 2), np.float32))
    proto.tensor_content = proto.tensor_content[:-1]
    with pytest.raises(TensorError, match="length"):
        from_tensor_proto(proto)
    with pytest.raises(TensorError, match="unsupported"):
        to_tensor_proto(np.zeros(2, np.float16))
