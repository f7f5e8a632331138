"""numpy arrays as ``.npy`` files, numpy scalars and dtypes inline. No pickle.

An array part is a standard ``.npy`` file (``np.load`` reads it): the header, then the
raw buffer written straight from the array's memory (in chunks for non-contiguous
arrays, so no full copy is made). Decoding allocates the array from the shape and dtype
in the verified manifest and reads the file into it. Object arrays are not handled here:
they travel inside the pickled skeleton.
"""

from __future__ import annotations

import ast
import base64
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..codec import Codec, PartReader, PartWriter

_MAGIC = b"\x93NUMPY"
_ALIGN = 64
_BLOCK = 16 << 20


def _dtype_from_descr(text: str) -> np.dtype[Any]:
    return np.lib.format.descr_to_dtype(ast.literal_eval(text))


def _npy_header(descr: Any, fortran_order: bool, shape: tuple[int, ...]) -> bytes:
    body = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran_order, shape)  # noqa: UP031
    try:
        encoded = body.encode("latin1")
        version, len_size, encoding = (1, 2, "latin1") if len(encoded) < 65000 else (2, 4, "latin1")
    except UnicodeEncodeError:
        version, len_size, encoding = 3, 4, "utf8"
    encoded = body.encode(encoding)
    prefix = len(_MAGIC) + 2 + len_size
    pad = -(prefix + len(encoded) + 1) % _ALIGN
    encoded += b" " * pad + b"\n"
    return _MAGIC + bytes([version, 0]) + len(encoded).to_bytes(len_size, "little") + encoded


def _byte_view(arr: np.ndarray[Any, Any]) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    if arr.nbytes == 0:
        return memoryview(b"")
    return memoryview(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def _blocks(arr: np.ndarray[Any, Any]) -> Iterator[memoryview]:
    """A non-contiguous array's bytes in C order, one block of rows at a time."""
    row_bytes = max(1, arr.nbytes // max(1, arr.shape[0]))
    rows = max(1, _BLOCK // row_bytes)
    for start in range(0, arr.shape[0], rows):
        yield _byte_view(np.ascontiguousarray(arr[start : start + rows]))


class NDArrayCodec(Codec):
    """``numpy.ndarray`` of any non-object dtype as an ``.npy`` file. No pickle."""

    id = "numpy.ndarray/npy"
    version = 1
    types = ("numpy.ndarray",)
    library = "numpy"

    def can_encode(self, obj: Any) -> bool:
        return type(obj) in (np.ndarray, np.memmap) and not obj.dtype.hasobject

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        arr: np.ndarray[Any, Any] = obj
        descr = np.lib.format.dtype_to_descr(arr.dtype)
        fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
        header = _npy_header(descr, fortran, arr.shape)
        with writer.open(".npy") as f:
            f.write(header)
            if arr.flags.c_contiguous:
                f.write(_byte_view(arr))
            elif fortran:
                f.write(_byte_view(arr.T))
            else:
                for block in _blocks(arr):
                    f.write(block)
        return {
            "descr": repr(descr),
            "shape": list(arr.shape),
            "fortran_order": fortran,
            "header_size": len(header),
        }

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        dtype = _dtype_from_descr(meta["descr"])
        shape = tuple(int(n) for n in meta["shape"])
        fortran = bool(meta["fortran_order"])
        arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        header = bytearray(int(meta["header_size"]))
        reader.read_into(".npy", [memoryview(header), _byte_view(arr.T if fortran else arr)])
        return arr


class ScalarCodec(Codec):
    """numpy scalars (``np.float32(1)``, ``np.datetime64``, structured ``np.void`` ...) inline."""

    id = "numpy.generic/raw"
    version = 1
    types = ("numpy.generic",)
    library = "numpy"

    def can_encode(self, obj: Any) -> bool:
        return not obj.dtype.hasobject

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        arr = np.asarray(obj)
        return {
            "descr": repr(np.lib.format.dtype_to_descr(arr.dtype)),
            "data": base64.b64encode(arr.tobytes()).decode("ascii"),
        }

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        dtype = _dtype_from_descr(meta["descr"])
        data = base64.b64decode(meta["data"])
        return np.frombuffer(data, dtype=dtype, count=1).reshape(())[()]


class DTypeCodec(Codec):
    """``numpy.dtype`` objects inline, by their descr."""

    id = "numpy.dtype/descr"
    version = 1
    types = ("numpy.dtype",)
    library = "numpy"

    def can_encode(self, obj: Any) -> bool:
        return not obj.hasobject

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        return {"descr": repr(np.lib.format.dtype_to_descr(obj))}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return _dtype_from_descr(meta["descr"])
