"""polars ``DataFrame`` and ``Series`` through Arrow IPC (polars' own Arrow conversion
keeps its dtypes: Categorical, Enum, Decimal, List, Struct ...). No pickle.

Frames with 128-bit integer columns (``Int128``, at any nesting), which pyarrow cannot
hold, are written with polars' own Arrow IPC writer instead (same file format; polars
reads it back, chunks merged).

Columns of polars' ``Object`` dtype hold arbitrary Python objects that neither Arrow
nor polars can serialize: they are refused, naming the columns.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc

from remote_codecs import Codec, PartReader, PartWriter, SerializationError


def _write(writer: PartWriter, table: pa.Table) -> None:
    with writer.open(".arrow") as f, pa.ipc.new_file(f, table.schema) as ipc:
        ipc.write_table(table)


def _read(reader: PartReader) -> pa.Table:
    buf = pa.allocate_buffer(reader.size(".arrow"))
    reader.read_into(".arrow", [memoryview(buf)])
    return pa.ipc.open_file(pa.BufferReader(buf)).read_all()


def _wide_integers(dtype: Any) -> bool:
    """Whether a polars dtype is, or holds, a 128-bit integer (pyarrow has none)."""
    wide = tuple(t for t in (getattr(pl, "Int128", None), getattr(pl, "UInt128", None)) if t)
    if any(dtype == t for t in wide):
        return True
    inner = getattr(dtype, "inner", None)
    if inner is not None and _wide_integers(inner):
        return True
    return any(_wide_integers(f.dtype) for f in getattr(dtype, "fields", None) or ())


def _encode_frame(writer: PartWriter, frame: pl.DataFrame) -> dict[str, Any]:
    if any(_wide_integers(d) for d in frame.dtypes):
        with writer.open(".arrow") as f:
            frame.write_ipc(f, compression="uncompressed")  # type: ignore[arg-type]
        return {"writer": "polars"}
    _write(writer, frame.to_arrow())
    return {}


def _decode_frame(reader: PartReader, meta: dict[str, Any]) -> pl.DataFrame:
    if meta.get("writer") == "polars":
        import io

        return pl.read_ipc(io.BytesIO(reader.read(".arrow")))
    frame = pl.from_arrow(_read(reader), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _refuse_objects(names: list[str], dtypes: list[Any]) -> None:
    bad = [name for name, dtype in zip(names, dtypes) if dtype == pl.Object]
    if bad:
        raise SerializationError(
            f"polars Object column(s) {bad} hold Python objects that cannot be stored: convert them "
            "to a polars dtype (e.g. pl.String or pl.Struct) or pass them as a list"
        )


class DataFrameCodec(Codec):
    """``polars.DataFrame``."""

    id = "polars.DataFrame/arrow"
    version = 1
    types = ("polars.dataframe.frame.DataFrame",)
    library = "polars"
    # polars writes the newest Arrow layouts it knows (view types, 128-bit integers)
    version_policy = "no-newer"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        _refuse_objects(obj.columns, obj.dtypes)
        return _encode_frame(writer, obj)

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return _decode_frame(reader, meta)


class SeriesCodec(Codec):
    """``polars.Series`` (its name kept)."""

    id = "polars.Series/arrow"
    version = 1
    types = ("polars.series.series.Series",)
    library = "polars"
    # polars writes the newest Arrow layouts it knows (view types, 128-bit integers)
    version_policy = "no-newer"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        _refuse_objects([obj.name], [obj.dtype])
        return {"name": obj.name, **_encode_frame(writer, pl.DataFrame([obj]))}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return _decode_frame(reader, meta).to_series(0).alias(meta["name"])
