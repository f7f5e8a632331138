"""numpy arrays as ``.npy`` files, numpy scalars and dtypes inline. No pickle.

An array part is a standard ``.npy`` file (``np.load`` reads it): the header, then the
raw buffer written straight from the array's memory (in chunks for non-contiguous
arrays, so no full copy is made). Decoding checks the shape and dtype in the verified
manifest against the file's size, allocates the array, reads the file into it and checks
that the file's header says the same. Bytes are kept as they are: byte order, NaN
payloads, C or Fortran order (a non-contiguous view comes back C-contiguous).
``np.recarray`` and ``np.matrix`` come back as themselves; masked arrays are their data
and mask arrays plus the fill value. Object arrays are not handled here: they travel
inside the pickled skeleton.
"""

from __future__ import annotations

import ast
import base64
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..codec import Codec, PartReader, PartWriter, Prefixed
from ..errors import DeserializationError

_MAGIC = b"\x93NUMPY"
_ALIGN = 64
_BLOCK = 16 << 20


_MAX_NDIM = 64
_SUBCLASSES: dict[str, type] = {"recarray": np.recarray, "matrix": np.matrix}


def _dtype_from_descr(text: Any) -> np.dtype[Any]:
    if not isinstance(text, str) or len(text) > 1 << 20:
        raise DeserializationError(f"numpy part: malformed dtype description {text!r:.200}")
    try:
        dtype = np.lib.format.descr_to_dtype(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError, KeyError, MemoryError, RecursionError) as exc:
        raise DeserializationError(
            f"numpy part: dtype description {text!r:.200} is not valid: {exc}"
        ) from None
    if dtype.hasobject:
        raise DeserializationError("numpy part: object dtypes are never decoded from a part")
    return dtype


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
    # .npy: a specified format every numpy reads
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        return (
            type(obj) in (np.ndarray, np.memmap, *_SUBCLASSES.values()) and not obj.dtype.hasobject
        )

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        arr: np.ndarray[Any, Any] = obj
        subclass = next((k for k, v in _SUBCLASSES.items() if type(arr) is v), None)
        if subclass is not None:
            arr = arr.view(np.ndarray)
        if subclass == "recarray":
            arr = arr.view(np.dtype((np.void, arr.dtype)))  # np.record -> plain structured
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
        meta: dict[str, Any] = {
            "descr": repr(descr),
            "shape": list(arr.shape),
            "fortran_order": fortran,
            "header_size": len(header),
        }
        if subclass is not None:
            meta["subclass"] = subclass
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        dtype = _dtype_from_descr(meta.get("descr"))
        shape = meta.get("shape")
        fortran, header_size = meta.get("fortran_order"), meta.get("header_size")
        subclass = meta.get("subclass")
        if (
            not isinstance(shape, list)
            or len(shape) > _MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)
            or type(fortran) is not bool
            or type(header_size) is not int
            or not 0 < header_size <= 1 << 20
            or (subclass is not None and subclass not in _SUBCLASSES)
        ):
            raise DeserializationError(
                f"numpy part: malformed array description (shape={shape!r}, "
                f"fortran_order={fortran!r}, header_size={header_size!r}, subclass={subclass!r})"
            )
        # the file must hold exactly this array: checked before anything is allocated
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        size = reader.size(".npy")
        if size != header_size + nbytes:
            raise DeserializationError(
                f"numpy part: a {dtype} array of shape {tuple(shape)} needs {nbytes} bytes after "
                f"a {header_size}-byte header, but the file holds {size} bytes"
            )
        arr = np.empty(tuple(shape), dtype=dtype, order="F" if fortran else "C")
        header = bytearray(header_size)
        reader.read_into(".npy", [memoryview(header), _byte_view(arr.T if fortran else arr)])
        if bytes(header) != _npy_header(ast.literal_eval(meta["descr"]), fortran, tuple(shape)):
            raise DeserializationError(
                "numpy part: the .npy header does not describe the array its manifest records"
            )
        if subclass is not None:
            return arr.view(_SUBCLASSES[subclass])
        return arr


class MaskedArrayCodec(Codec):
    """``numpy.ma.MaskedArray``: data and mask as ``.npy`` parts, fill value inline. No pickle."""

    id = "numpy.ma.MaskedArray/npy"
    version = 1
    types = ("numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray")
    library = "numpy"
    # .npy files and raw scalar bytes: the same under any numpy
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        return type(obj) is np.ma.MaskedArray and not obj.dtype.hasobject

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        codec = NDArrayCodec()
        meta: dict[str, Any] = {
            "data": codec.encode(np.ma.getdata(obj), Prefixed(writer, ".data")),  # type: ignore[arg-type]
            "hard_mask": bool(obj.hardmask),
            "fill_value": _scalar_meta(np.asarray(obj.fill_value, dtype=obj.dtype)),
        }
        if obj.mask is np.ma.nomask:
            meta["nomask"] = True
        else:
            meta["mask"] = codec.encode(np.asarray(obj.mask), Prefixed(writer, ".mask"))  # type: ignore[arg-type]
        return meta

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        codec = NDArrayCodec()
        data = codec.decode(Prefixed(reader, ".data"), meta["data"], 1)  # type: ignore[arg-type]
        mask = (
            np.ma.nomask
            if meta.get("nomask")
            else codec.decode(Prefixed(reader, ".mask"), meta["mask"], 1)  # type: ignore[arg-type]
        )
        if mask is not np.ma.nomask and (
            mask.shape != data.shape or mask.dtype != np.ma.make_mask_descr(data.dtype)
        ):
            raise DeserializationError("numpy part: a masked array's mask does not fit its data")
        fill = _scalar_from_meta(meta["fill_value"])
        out = np.ma.MaskedArray(data, mask=mask, fill_value=fill, hard_mask=bool(meta["hard_mask"]))
        return out


def _scalar_meta(arr: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {
        "descr": repr(np.lib.format.dtype_to_descr(arr.dtype)),
        "data": base64.b64encode(arr.tobytes()).decode("ascii"),
    }


def _scalar_from_meta(meta: Any) -> Any:
    if not isinstance(meta, dict) or not isinstance(meta.get("data"), str):
        raise DeserializationError(f"numpy part: malformed scalar {meta!r:.200}")
    dtype = _dtype_from_descr(meta.get("descr"))
    data = base64.b64decode(meta["data"], validate=True)
    if len(data) != dtype.itemsize:
        raise DeserializationError(
            f"numpy part: a {dtype} scalar needs {dtype.itemsize} bytes, not {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype, count=1).reshape(())[()]


class ScalarCodec(Codec):
    """numpy scalars (``np.float32(1)``, ``np.datetime64``, structured ``np.void`` ...) inline."""

    id = "numpy.generic/raw"
    version = 1
    types = ("numpy.generic", "numpy.bytes_")
    library = "numpy"
    # raw bytes of a dtype described like .npy does: the same under any numpy
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        return not obj.dtype.hasobject

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        return _scalar_meta(np.asarray(obj))

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return _scalar_from_meta(meta)


class DTypeCodec(Codec):
    """``numpy.dtype`` objects inline, by their descr."""

    id = "numpy.dtype/descr"
    version = 1
    types = ("numpy.dtype",)
    library = "numpy"
    # the .npy dtype description
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        return not obj.hasobject

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        return {"descr": repr(np.lib.format.dtype_to_descr(obj))}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return _dtype_from_descr(meta.get("descr"))
