"""Keras 3 models in the ``.keras`` format, loaded with ``safe_mode=True``. No pickle.

A model with ``Lambda`` layers holding Python code is refused by safe mode on load:
write the layer as a registered custom layer (``@keras.saving.register_keras_serializable``).
Custom objects must be importable where the model is loaded.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import keras

from ..codec import Codec, PartReader, PartWriter


class ModelCodec(Codec):
    """``keras.Model`` (Sequential, functional and subclassed models)."""

    id = "keras.Model/keras"
    version = 1
    types = ("keras.src.models.model.Model",)
    library = "keras"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            obj.save(path)
            with open(path, "rb") as f:
                writer.write(".keras", f.read())
        return {"keras_version": keras.__version__, "class": type(obj).__qualname__}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            with open(path, "wb") as f:
                f.write(reader.read(".keras"))
            return keras.saving.load_model(path, safe_mode=True)
