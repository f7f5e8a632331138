"""TensorFlow ``tf.Tensor`` and ``tf.Variable`` as ``.npy`` arrays. No pickle.

TensorFlow is imported only when a TensorFlow object is seen (or a manifest names this
codec). String tensors, ragged and sparse tensors travel by pickle. ``tf.data.Dataset``
is refused (see ``codecs/__init__.py``): pass a path and build the dataset inside the
function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ..codec import Codec, PartReader, PartWriter
from .numpy import NDArrayCodec


class TensorCodec(Codec):
    """Eager ``tf.Tensor`` (numeric and bool dtypes)."""

    id = "tensorflow.Tensor/npy"
    version = 1
    types = ("tensorflow.python.framework.ops._EagerTensorBase",)
    library = "tensorflow"
    # the part is a .npy array: any TensorFlow reads it
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        return bool(obj.dtype != tf.string and obj.dtype.is_numpy_compatible)

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        meta = NDArrayCodec().encode(np.asarray(obj.numpy()), writer)
        meta["tf_dtype"] = obj.dtype.name
        meta["device"] = obj.device
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return tf.constant(
            NDArrayCodec().decode(reader, meta, 1), dtype=tf.as_dtype(meta["tf_dtype"])
        )


class VariableCodec(Codec):
    """``tf.Variable``: value, dtype, name and ``trainable``."""

    id = "tensorflow.Variable/npy"
    version = 1
    types = ("tensorflow.python.ops.variables.Variable",)
    library = "tensorflow"
    # the part is a .npy array: any TensorFlow reads it
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        return bool(obj.dtype != tf.string)

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        meta = NDArrayCodec().encode(np.asarray(obj.numpy()), writer)
        meta.update(
            tf_dtype=obj.dtype.name, name=obj.name.split(":")[0], trainable=bool(obj.trainable)
        )
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        value = NDArrayCodec().decode(reader, meta, 1)
        return tf.Variable(
            value,
            dtype=tf.as_dtype(meta["tf_dtype"]),
            name=meta["name"],
            trainable=meta["trainable"],
        )
