"""polars ``DataFrame`` and ``Series`` through Arrow IPC (polars' own Arrow conversion
keeps its dtypes: Categorical, Enum, Decimal, List, Struct ...). No pickle.

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

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        _refuse_objects(obj.columns, obj.dtypes)
        _write(writer, obj.to_arrow())
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return pl.from_arrow(_read(reader), rechunk=False)


class SeriesCodec(Codec):
    """``polars.Series`` (its name kept)."""

    id = "polars.Series/arrow"
    version = 1
    types = ("polars.series.series.Series",)
    library = "polars"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        _refuse_objects([obj.name], [obj.dtype])
        _write(writer, pl.DataFrame([obj]).to_arrow())
        return {"name": obj.name}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        frame = pl.from_arrow(_read(reader), rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame.to_series(0).alias(meta["name"])
