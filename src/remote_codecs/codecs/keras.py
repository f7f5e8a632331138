"""Keras 3 models in the ``.keras`` format, loaded with ``safe_mode=True``. No pickle.

A model whose config holds Python code (``Lambda`` layers, lambda activations: Keras
stores their bytecode) is marked at save time as needing pickle: ``allow_pickle=False``
refuses it before anything is read, and ``allow_pickle=True`` loads it with Keras'
``safe_mode=False`` (only then). Custom objects must be importable where the model is
loaded; a registered custom layer (``@keras.saving.register_keras_serializable``) needs
no pickle.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any

import keras

from ..codec import Codec, PartReader, PartWriter
from ..errors import DeserializationError, SerializationError


def _code_layers(config: Any, kind: str, layer: str = "model") -> Iterator[str]:
    """The names of the layers whose config holds Python bytecode: ``kind="lambda"`` finds
    what Keras reloads with ``safe_mode=False`` (``"__lambda__"``), ``kind="bare"`` the bare
    ``func_dump`` a lambda activation becomes, which no Keras can reload."""
    if isinstance(config, dict):
        inner = config.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            layer = inner["name"]
        if kind == "lambda" and config.get("class_name") == "__lambda__":
            yield layer
        dump = config.get("value")
        if (
            kind == "bare"
            and set(config) == {"value"}
            and isinstance(dump, list)
            and len(dump) == 3
            and isinstance(dump[0], str)
        ):
            yield layer
        for value in config.values():
            yield from _code_layers(value, kind, layer)
    elif isinstance(config, list):
        for value in config:
            yield from _code_layers(value, kind, layer)


class ModelCodec(Codec):
    """``keras.Model`` (Sequential, functional and subclassed models)."""

    id = "keras.Model/keras"
    version = 1
    types = ("keras.src.models.model.Model",)
    library = "keras"
    # a .keras file written by a newer Keras may use config keys an older one misreads
    version_policy = "no-newer"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            obj.save(path)
            with open(path, "rb") as f:
                data = f.read()
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            config = json.loads(z.read("config.json"))
        bare = sorted(set(_code_layers(config, "bare")))
        if bare:
            raise SerializationError(
                f"Keras cannot reload the lambda function(s) in layer(s) {bare} (a lambda "
                "activation is saved in a form no load_model accepts): use a named function "
                "(registered with @keras.saving.register_keras_serializable) instead"
            )
        code = sorted(set(_code_layers(config, "lambda")))
        writer.write(".keras", data)
        meta: dict[str, Any] = {"keras_version": keras.__version__, "class": type(obj).__qualname__}
        if code:
            # Keras stores these layers' Python bytecode: loading it runs code like pickle does
            writer.pickle(".code.pkl", code)
            meta["python_code"] = code
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        code = meta.get("python_code")
        if code and not reader.allow_pickle:
            raise DeserializationError(
                f"this Keras model holds Python code (layers {code}: Lambda layers or lambda "
                "functions) that loading would run, and allow_pickle=False; load it with "
                "allow_pickle=True only if you trust its producer"
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            with open(path, "wb") as f:
                f.write(reader.read(".keras"))
            # safe_mode stays on unless the loader allowed pickle and the part declares code
            safe = not (code and reader.allow_pickle)
            return keras.saving.load_model(path, safe_mode=safe)
