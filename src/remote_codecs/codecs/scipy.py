"""scipy sparse matrices and arrays (every format) as their component ``.npy`` arrays. No pickle."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..codec import Codec, PartReader, PartWriter, Prefixed
from .numpy import NDArrayCodec

# format -> the arrays that make it up
_COMPONENTS = {
    "csr": ("data", "indices", "indptr"),
    "csc": ("data", "indices", "indptr"),
    "bsr": ("data", "indices", "indptr"),
    "coo": ("data", "row", "col"),
    "dia": ("data", "offsets"),
}


class SparseCodec(Codec):
    """``scipy.sparse`` matrices and arrays: csr, csc, bsr, coo, dia, lil, dok."""

    id = "scipy.sparse/npy"
    version = 1
    types = ("scipy.sparse._base._spbase",)
    library = "scipy"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        fmt = obj.format
        stored = (
            obj if fmt in _COMPONENTS else obj.tocsr()
        )  # lil, dok: kept as csr, rebuilt on load
        kind = stored.format
        arrays = {}
        codec = NDArrayCodec()
        for name in _COMPONENTS[kind]:
            values = np.ascontiguousarray(getattr(stored, name))
            arrays[name] = codec.encode(values, Prefixed(writer, f".{name}"))  # type: ignore[arg-type]
        cls = type(obj)
        return {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "format": fmt,
            "stored": kind,
            "shape": list(obj.shape),
            "blocksize": list(stored.blocksize) if kind == "bsr" else None,
            "arrays": arrays,
        }

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        codec = NDArrayCodec()
        arrays = {
            name: codec.decode(Prefixed(reader, f".{name}"), m, 1)
            for name, m in meta["arrays"].items()
        }  # type: ignore[arg-type]
        module, _, name = meta["class"].partition(":")
        cls: Any = importlib.import_module(module)
        for attr in name.split("."):
            cls = getattr(cls, attr)
        if not (isinstance(cls, type) and issubclass(cls, sp._base._spbase)):
            raise TypeError(f"{meta['class']} is not a scipy sparse class")
        kind = meta["stored"]
        shape = tuple(meta["shape"])
        is_array = issubclass(cls, sp.sparray)
        ctor: Any = getattr(sp, f"{kind}_{'array' if is_array else 'matrix'}")
        if kind in ("csr", "csc", "bsr"):
            extra = {"blocksize": tuple(meta["blocksize"])} if kind == "bsr" else {}
            stored = ctor(
                (arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape, **extra
            )
        elif kind == "coo":
            stored = ctor((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
        else:
            stored = ctor((arrays["data"], arrays["offsets"]), shape=shape)
        if meta["format"] != kind:
            stored = stored.asformat(meta["format"])
        return stored if type(stored) is cls else cls(stored)
