"""scipy sparse matrices and arrays (every format, 1-D to n-D COO) as their component
``.npy`` arrays. No pickle.

The class a part decodes to is checked against a static allowlist of the public
``scipy.sparse`` classes (``csr_matrix`` ... ``dok_array``) before anything is
resolved, and is then taken from ``scipy.sparse`` itself: the module a manifest names
is never imported. Subclasses of those classes are not handled here (they travel in
the pickled skeleton).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..codec import Codec, PartReader, PartWriter, Prefixed
from ..errors import DeserializationError
from .numpy import NDArrayCodec

# format -> the arrays that make it up (COO: "coords.<axis>" for arrays that are not 2-D)
_COMPONENTS = {
    "csr": ("data", "indices", "indptr"),
    "csc": ("data", "indices", "indptr"),
    "bsr": ("data", "indices", "indptr"),
    "coo": ("data", "row", "col"),
    "dia": ("data", "offsets"),
}
_FORMATS = ("csr", "csc", "bsr", "coo", "dia", "lil", "dok")
# the only classes a part may name: checked before anything is resolved
ALLOWED_CLASSES = frozenset(f"{fmt}_{kind}" for fmt in _FORMATS for kind in ("array", "matrix"))
# where those classes have lived across scipy versions (a label only: never imported)
_MODULE = re.compile(r"scipy\.sparse(\.[_a-z0-9]+)?")
_MAX_NDIM = 64


def _allowed_class(text: Any) -> type:
    """The scipy.sparse class a part's ``class`` names, if it is on the allowlist."""
    module, sep, name = text.partition(":") if isinstance(text, str) else ("", "", "")
    if not (sep and _MODULE.fullmatch(module) and name in ALLOWED_CLASSES):
        raise DeserializationError(
            f"scipy sparse part names class {text!r}, which is not one of the scipy.sparse "
            f"classes this codec builds ({', '.join(sorted(ALLOWED_CLASSES))}); refusing it"
        )
    cls: type = getattr(sp, name)
    return cls


def _coo_components(ndim: int) -> tuple[str, ...]:
    return _COMPONENTS["coo"] if ndim == 2 else ("data", *(f"coords.{i}" for i in range(ndim)))


class SparseCodec(Codec):
    """``scipy.sparse`` matrices and arrays: csr, csc, bsr, coo (any ndim), dia, lil, dok."""

    id = "scipy.sparse/npy"
    version = 1
    types = ("scipy.sparse._base._spbase",)
    library = "scipy"
    # the parts are .npy arrays with the fixed meaning of each sparse format
    version_policy = "stable"

    def can_encode(self, obj: Any) -> bool:
        cls = type(obj)
        return cls.__name__ in ALLOWED_CLASSES and getattr(sp, cls.__name__, None) is cls

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        fmt = obj.format
        stored = obj if fmt in _COMPONENTS else obj.tocsr()  # lil, dok: kept as csr
        kind = stored.format
        names = _coo_components(stored.ndim) if kind == "coo" else _COMPONENTS[kind]
        arrays = {}
        codec = NDArrayCodec()
        for name in names:
            if name.startswith("coords."):
                values = stored.coords[int(name.split(".")[1])]
            else:
                values = getattr(stored, name)
            arrays[name] = codec.encode(np.ascontiguousarray(values), Prefixed(writer, f".{name}"))  # type: ignore[arg-type]
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
        cls = _allowed_class(meta.get("class"))  # before anything else is read or built
        kind, fmt = meta.get("stored"), meta.get("format")
        shape = meta.get("shape")
        if (
            kind not in _COMPONENTS
            or fmt not in _FORMATS
            or not isinstance(shape, list)
            or not 1 <= len(shape) <= _MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)
        ):
            raise DeserializationError(
                f"scipy sparse part has a malformed format/shape "
                f"(stored={kind!r}, format={fmt!r}, shape={shape!r})"
            )
        expected = _coo_components(len(shape)) if kind == "coo" else _COMPONENTS[kind]
        given = meta.get("arrays")
        if not isinstance(given, dict) or set(given) != set(expected):
            raise DeserializationError(
                f"scipy sparse part ({kind}) must hold the arrays {list(expected)}, "
                f"not {sorted(given) if isinstance(given, dict) else given!r}"
            )
        if len(shape) != 2 and not (_builds(kind, len(shape)) and _builds(fmt, len(shape))):
            raise _no_ndim(cls, tuple(shape), reader)
        codec = NDArrayCodec()
        arrays = {
            name: codec.decode(Prefixed(reader, f".{name}"), given[name], 1)  # type: ignore[arg-type]
            for name in expected
        }
        ctor: Any = getattr(sp, f"{kind}_{'array' if issubclass(cls, sp.sparray) else 'matrix'}")
        dims = tuple(shape)
        if kind in ("csr", "csc", "bsr"):
            extra = {"blocksize": tuple(meta["blocksize"])} if kind == "bsr" else {}
            stored = ctor(
                (arrays["data"], arrays["indices"], arrays["indptr"]), shape=dims, **extra
            )
        elif kind == "coo":
            coords = tuple(arrays[name] for name in expected[1:])
            stored = ctor((arrays["data"], coords), shape=dims)
        else:
            stored = ctor((arrays["data"], arrays["offsets"]), shape=dims)
        if kind in ("csr", "csc", "bsr"):
            stored.check_format(full_check=True)  # indices in bounds before anything reads them
        if fmt != kind:
            stored = stored.asformat(fmt)
        return stored if type(stored) is cls else cls(stored)


def _builds(fmt: str, ndim: int) -> bool:
    """Whether this scipy builds ``ndim``-D sparse arrays of ``fmt`` (under scipy 1.11 every
    sparse array was 2-D: ``coo_array(np.zeros(3))`` had shape (1, 3))."""
    shape = (1,) * ndim
    try:
        return bool(getattr(sp, f"{fmt}_array")(np.zeros(shape)).shape == shape)
    except (TypeError, ValueError):
        return False


def _no_ndim(cls: type, dims: tuple[int, ...], reader: PartReader) -> DeserializationError:
    """The refusal for a 1-D or n-D sparse array that this scipy cannot build."""
    import scipy

    written = getattr(reader, "written_version", None)
    by = f", written by scipy {written}" if written else ""
    return DeserializationError(
        f"scipy sparse part is a {len(dims)}-D {cls.__name__} of shape {dims}{by}; scipy "
        f"{scipy.__version__} builds only 2-D sparse arrays of this format. Install the "
        f"scipy that wrote it{f' ({written})' if written else ''} or a newer one to load it"
    )
