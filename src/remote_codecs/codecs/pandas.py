"""pandas ``DataFrame``, ``Series`` and ``Index`` through Arrow IPC, exactly.

Layout of a part: ``.arrow``, an Arrow IPC file with one row-aligned field per data
column and per index array; ``.aux.arrow``, a one-row IPC file holding arrays of other
lengths (MultiIndex levels, categories, column labels), each wrapped in a list; and,
only where Arrow cannot represent a column exactly, ``.<n>.npy`` (complex and other raw
numpy dtypes, no pickle) or ``.objs.pkl`` (mixed-type objects, sparse columns, Python
ints beyond int64, custom objects: pickle). The structure (column labels, index types
and names, dtypes, ``attrs``, ``flags``, ``DatetimeIndex.freq``) is in the manifest's
metadata; ``meta["pickled_columns"]`` lists the columns that needed pickle.

Loads with ``allow_pickle=False`` unless a column needed pickle (then the manifest marks
the part as pickled and safe mode refuses it before anything is read).

Numeric columns are written straight from their buffers and read back as zero-copy,
writable views of one buffer per part, in unconsolidated blocks: no copy either way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..codec import Codec, PartReader, PartWriter, Prefixed
from .arrow import read_ipc_buffer, write_ipc

_NULL_KINDS = {"none": None, "nan": float("nan"), "na": pd.NA, "nat": pd.NaT}


def _null_kind(value: Any) -> str | None:
    if value is None:
        return "none"
    if value is pd.NA:
        return "na"
    if value is pd.NaT:
        return "nat"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return None


def _values(obj: pd.Series | pd.Index) -> Any:
    """The values of a Series or Index without a copy: an ndarray or an ExtensionArray."""
    return obj.to_numpy() if isinstance(obj.dtype, np.dtype) else obj.array


class _Encoder:
    """Collects a frame's arrays into Arrow fields, raw files and pickled objects."""

    def __init__(self, writer: PartWriter, nrows: int) -> None:
        self.writer = writer
        self.nrows = nrows
        self.rows: dict[str, pa.Array] = {}
        self.aux: dict[str, pa.Array] = {}
        self.objects: list[Any] = []
        self.files = 0
        self.pickled_columns: list[Any] = []

    # -- plain values (names, attrs) --------------------------------------------------------

    def plain(self, value: Any) -> Any:
        """JSON for a label or attribute value; anything else is kept as a pickled object."""
        tp = type(value)
        if value is None or tp in (bool, int, str):
            return value
        if tp is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if tp is tuple:
            return {"$tuple": [self.plain(v) for v in value]}
        if tp is list:
            return [self.plain(v) for v in value]
        if tp is dict and all(type(k) is str and not k.startswith("$") for k in value):
            return {k: self.plain(v) for k, v in value.items()}
        self.objects.append(value)
        return {"$obj": len(self.objects) - 1}

    # -- arrays -----------------------------------------------------------------------------

    def _field(self, array: pa.Array, aligned: bool) -> str:
        table = self.rows if aligned else self.aux
        name = f"{'r' if aligned else 'a'}{len(table)}"
        table[name] = array
        return name

    def _pickle(self, values: Any, label: Any = None) -> dict[str, Any]:
        if label is not None:
            self.pickled_columns.append(label)
        self.objects.append(values)
        return {"k": "pickle", "obj": len(self.objects) - 1}

    def array(self, values: Any, aligned: bool, label: Any = None) -> dict[str, Any]:
        """Encode one column (a Series' or Index's values) and return its spec."""
        dtype = values.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cat = pd.Categorical(values)
            return {
                "k": "cat",
                "codes": self.array(cat.codes, aligned),
                "categories": self.index(cat.categories, aligned=False),
                "ordered": bool(cat.ordered),
            }
        if isinstance(dtype, pd.SparseDtype):
            return self._pickle(values, label)
        if isinstance(dtype, np.dtype):
            return self._numpy(np.asarray(values), aligned, label)
        return self._extension(values, aligned, label)

    def _numpy(self, values: np.ndarray, aligned: bool, label: Any) -> dict[str, Any]:
        kind = values.dtype.kind
        descr = values.dtype.str
        if kind in "biufmM" and values.dtype.byteorder in "=|<" and values.dtype != np.float16:
            return {"k": "np", "dtype": descr, "f": self._field(pa.array(values), aligned)}
        if kind == "O":
            return self._object(values, aligned, label)
        # complex, float16, big-endian, fixed-width bytes/str, void: a raw .npy file
        from .numpy import NDArrayCodec  # the same .npy writer

        self.files += 1
        suffix = f".{self.files}"
        meta = NDArrayCodec().encode(np.ascontiguousarray(values), Prefixed(self.writer, suffix))  # type: ignore[arg-type]
        return {"k": "npy", "suffix": suffix + ".npy", "meta": meta}

    def _object(self, values: np.ndarray, aligned: bool, label: Any) -> dict[str, Any]:
        mask = pd.isna(values)
        kinds = {_null_kind(v) for v in values[mask]} if mask.any() else set()
        if None in kinds or len(kinds) > 1:
            return self._pickle(values, label)
        try:
            array = pa.array(values, from_pandas=True)
        except (
            pa.ArrowInvalid,
            pa.ArrowTypeError,
            pa.ArrowNotImplementedError,
            OverflowError,
            ValueError,
            TypeError,
        ):
            return self._pickle(values, label)
        if not (
            pa.types.is_string(array.type)
            or pa.types.is_large_string(array.type)
            or pa.types.is_binary(array.type)
            or pa.types.is_null(array.type)
        ):
            # lists, dicts, dates ... would not come back as they were
            return self._pickle(values, label)
        spec: dict[str, Any] = {"k": "obj", "f": self._field(array, aligned)}
        if kinds:
            spec["null"] = kinds.pop()
        return spec

    def _extension(self, values: Any, aligned: bool, label: Any) -> dict[str, Any]:
        dtype = values.dtype
        if isinstance(dtype, (pd.StringDtype, pd.ArrowDtype)):
            try:
                array = pa.array(values)
            except (
                pa.ArrowInvalid,
                pa.ArrowTypeError,
                pa.ArrowNotImplementedError,
                TypeError,
                ValueError,
            ):
                return self._pickle(values, label)
            if isinstance(dtype, pd.ArrowDtype):
                return {"k": "arrow", "f": self._field(array, aligned)}
            na = "nan" if dtype.na_value is not pd.NA else "na"
            return {
                "k": "string",
                "storage": dtype.storage,
                "na": na,
                "f": self._field(array, aligned),
            }
        name = str(dtype)
        try:
            same = pd.api.types.pandas_dtype(name) == dtype
        except (TypeError, ValueError):
            same = False
        if not same or not hasattr(dtype, "__from_arrow__"):
            return self._pickle(values, label)
        try:
            array = pa.array(values)
        except (
            pa.ArrowInvalid,
            pa.ArrowTypeError,
            pa.ArrowNotImplementedError,
            TypeError,
            ValueError,
        ):
            return self._pickle(values, label)
        return {"k": "ext", "dtype": name, "f": self._field(array, aligned)}

    # -- indexes -------------------------------------------------------------------------------

    def index(self, index: pd.Index, aligned: bool) -> dict[str, Any]:
        if type(index) is pd.RangeIndex:
            return {
                "t": "range",
                "start": index.start,
                "stop": index.stop,
                "step": index.step,
                "name": self.plain(index.name),
            }
        if isinstance(index, pd.MultiIndex):
            return {
                "t": "multi",
                "levels": [self.index(level, aligned=False) for level in index.levels],
                "codes": [self.array(np.asarray(codes), aligned) for codes in index.codes],
                "names": [self.plain(n) for n in index.names],
            }
        spec: dict[str, Any] = {
            "t": "index",
            "values": self.array(_values(index), aligned),
            "name": self.plain(index.name),
        }
        freq = getattr(index, "freq", None)
        if freq is not None and isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
            spec["freq"] = freq.freqstr
        return spec

    # -- writing --------------------------------------------------------------------------------

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        if self.rows:
            write_ipc(
                self.writer,
                ".arrow",
                pa.record_batch(list(self.rows.values()), names=list(self.rows)),
            )
        if self.aux:
            wrapped = [
                pa.ListArray.from_arrays(pa.array([0, len(a)], pa.int32()), a)
                if len(a) < 2**31
                else pa.LargeListArray.from_arrays(pa.array([0, len(a)], pa.int64()), a)
                for a in self.aux.values()
            ]
            write_ipc(self.writer, ".aux.arrow", pa.record_batch(wrapped, names=list(self.aux)))
        if self.objects:
            self.writer.pickle(".objs.pkl", self.objects)
        meta["pickled_columns"] = (
            [self.plain(c) for c in self.pickled_columns] if self.pickled_columns else []
        )
        return meta


# -- decoding ------------------------------------------------------------------------------------


class _Decoder:
    def __init__(self, reader: PartReader, meta: dict[str, Any]) -> None:
        self.reader = reader
        self.rows: pa.Table | None = None
        self.memory: pa.Buffer | None = None
        if meta.get("has_rows"):
            self.rows, self.memory = read_ipc_buffer(reader, ".arrow")
        self.aux = read_ipc_buffer(reader, ".aux.arrow")[0] if meta.get("has_aux") else None
        self.objects: list[Any] = reader.unpickle(".objs.pkl") if meta.get("has_objects") else []

    def plain(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.plain(v) for v in value]
        if isinstance(value, dict):
            if len(value) == 1:
                ((tag, inner),) = value.items()
                if tag == "$obj":
                    return self.objects[inner]
                if tag == "$tuple":
                    return tuple(self.plain(v) for v in inner)
                if tag == "$float":
                    return float(inner)
            return {k: self.plain(v) for k, v in value.items()}
        return value

    def _arrow(self, field: str) -> pa.Array:
        if field.startswith("r"):
            assert self.rows is not None
            column = self.rows.column(field)
            return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        assert self.aux is not None
        return self.aux.column(field)[0].values

    def array(self, spec: dict[str, Any]) -> Any:
        kind = spec["k"]
        if kind == "np":
            return _numpy_view(self._arrow(spec["f"]), np.dtype(spec["dtype"]), self.memory)
        if kind == "obj":
            out = self._arrow(spec["f"]).to_numpy(zero_copy_only=False)
            out = np.asarray(out, dtype=object)
            if spec.get("null") not in (None, "none"):
                out[pd.isna(out)] = _NULL_KINDS[spec["null"]]
            return out
        if kind == "ext":
            dtype = pd.api.types.pandas_dtype(spec["dtype"])
            values = dtype.__from_arrow__(self._arrow(spec["f"]))
            return values if values.dtype == dtype else values.astype(dtype)
        if kind == "string":
            na_value = np.nan if spec["na"] == "nan" else pd.NA
            dtype = pd.StringDtype(storage=spec["storage"], na_value=na_value)
            return dtype.__from_arrow__(self._arrow(spec["f"]))
        if kind == "arrow":
            return pd.arrays.ArrowExtensionArray(self._arrow(spec["f"]))
        if kind == "cat":
            categories = self.index(spec["categories"])
            codes = self.array(spec["codes"])
            return pd.Categorical.from_codes(codes, categories=categories, ordered=spec["ordered"])
        if kind == "npy":
            from .numpy import NDArrayCodec

            prefix = spec["suffix"][: -len(".npy")]
            return NDArrayCodec().decode(Prefixed(self.reader, prefix), spec["meta"], 1)  # type: ignore[arg-type]
        if kind == "pickle":
            return self.objects[spec["obj"]]
        raise ValueError(f"unknown column kind {kind!r}")

    def index(self, spec: dict[str, Any]) -> pd.Index:
        if spec["t"] == "range":
            return pd.RangeIndex(
                spec["start"], spec["stop"], spec["step"], name=self.plain(spec["name"])
            )
        if spec["t"] == "multi":
            return pd.MultiIndex(
                levels=[self.index(level) for level in spec["levels"]],
                codes=[self.array(c) for c in spec["codes"]],
                names=[self.plain(n) for n in spec["names"]],
                verify_integrity=False,
            )
        values = self.array(spec["values"])
        index = pd.Index(
            values, name=self.plain(spec["name"]), copy=False, dtype=getattr(values, "dtype", None)
        )
        if spec.get("freq"):
            cls = pd.DatetimeIndex if isinstance(index, pd.DatetimeIndex) else pd.TimedeltaIndex
            index = cls(index, freq=spec["freq"], name=index.name)
        return index


def _numpy_view(
    array: pa.Array, dtype: np.dtype[Any], memory: pa.Buffer | None
) -> np.ndarray[Any, Any]:
    """A writable numpy view of a null-free fixed-width Arrow array read from ``memory``
    (the part's buffer): no copy. Anything else is converted (a copy)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if array.null_count == 0 and dtype.kind != "b" and memory is not None:
        data = array.buffers()[1]
        base = memory.address
        if (
            data is not None
            and base <= data.address
            and data.address + data.size <= base + memory.size
        ):
            offset = data.address - base + array.offset * dtype.itemsize
            return np.frombuffer(memory, dtype=dtype, count=len(array), offset=offset)
    return np.array(array.to_numpy(zero_copy_only=False), dtype=dtype)


# -- the codecs ----------------------------------------------------------------------------------


def _column(values: Any) -> Any:
    """A column as the DataFrame constructor must see it: object arrays stay object
    (pandas would otherwise infer its string dtype from them)."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        return pd.Series(values, dtype=object, copy=False)
    return values


def _finish(encoder: _Encoder, meta: dict[str, Any]) -> dict[str, Any]:
    meta["has_rows"] = bool(encoder.rows)
    meta["has_aux"] = bool(encoder.aux)
    meta["has_objects"] = bool(encoder.objects)
    return encoder.finish(meta)


def _attrs_and_flags(encoder: _Encoder, obj: Any) -> dict[str, Any]:
    return {
        "attrs": encoder.plain(dict(obj.attrs)) if obj.attrs else None,
        "allows_duplicate_labels": bool(obj.flags.allows_duplicate_labels),
    }


def _restore(obj: Any, dec: _Decoder, meta: dict[str, Any]) -> Any:
    """Put ``attrs`` and ``flags`` back on a decoded DataFrame or Series."""
    if meta.get("attrs"):
        obj.attrs = dec.plain(meta["attrs"])
    if not meta.get("allows_duplicate_labels", True):
        obj = obj.set_flags(allows_duplicate_labels=False)
    return obj


class DataFrameCodec(Codec):
    """``pandas.DataFrame`` through Arrow IPC; exact under ``assert_frame_equal``."""

    id = "pandas.DataFrame/arrow"
    version = 1
    types = ("pandas.DataFrame", "pandas.core.frame.DataFrame")
    library = "pandas"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        df: pd.DataFrame = obj
        enc = _Encoder(writer, len(df))
        meta: dict[str, Any] = {
            "nrows": len(df),
            "index": enc.index(df.index, aligned=True),
            "columns": enc.index(df.columns, aligned=False),
            "data": [
                enc.array(_values(df.iloc[:, i]), aligned=True, label=df.columns[i])
                for i in range(df.shape[1])
            ],
            **_attrs_and_flags(enc, df),
        }
        return _finish(enc, meta)

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        dec = _Decoder(reader, meta)
        index = dec.index(meta["index"])
        columns = dec.index(meta["columns"])
        arrays = [_column(dec.array(spec)) for spec in meta["data"]]
        if arrays:
            df = pd.DataFrame(dict(enumerate(arrays)), copy=False)
            df.index = index
        else:
            df = pd.DataFrame(index=index)
        df.columns = columns
        return _restore(df, dec, meta)


class SeriesCodec(Codec):
    """``pandas.Series`` through Arrow IPC; exact under ``assert_series_equal``."""

    id = "pandas.Series/arrow"
    version = 1
    types = ("pandas.Series", "pandas.core.series.Series")
    library = "pandas"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        s: pd.Series = obj
        enc = _Encoder(writer, len(s))
        meta: dict[str, Any] = {
            "index": enc.index(s.index, aligned=True),
            "values": enc.array(_values(s), aligned=True, label=s.name),
            "name": enc.plain(s.name),
            **_attrs_and_flags(enc, s),
        }
        return _finish(enc, meta)

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        dec = _Decoder(reader, meta)
        values = dec.array(meta["values"])
        s = pd.Series(
            values,
            index=dec.index(meta["index"]),
            name=dec.plain(meta["name"]),
            dtype=values.dtype,
            copy=False,
        )
        return _restore(s, dec, meta)


class IndexCodec(Codec):
    """``pandas.Index`` (every kind: Range, Multi, Categorical, Datetime with freq ...)."""

    id = "pandas.Index/arrow"
    version = 1
    types = ("pandas.Index", "pandas.core.indexes.base.Index")
    library = "pandas"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        enc = _Encoder(writer, len(obj))
        return _finish(enc, {"index": enc.index(obj, aligned=True)})

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return _Decoder(reader, meta).index(meta["index"])
