"""pyarrow ``Table``, ``RecordBatch``, ``Array`` and ``ChunkedArray`` as Arrow IPC files. No pickle.

Sliced data is written as the slice, not its parent's buffers (Arrow's IPC writer
truncates them), and reading is zero-copy over one buffer per part.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.ipc

from ..codec import Codec, PartReader, PartWriter


def write_ipc(writer: PartWriter, suffix: str, table: pa.Table | pa.RecordBatch) -> None:
    with writer.open(suffix) as f, pa.ipc.new_file(f, table.schema) as ipc:
        if isinstance(table, pa.RecordBatch):
            ipc.write_batch(table)
        else:
            ipc.write_table(table)


def read_ipc_buffer(reader: PartReader, suffix: str) -> tuple[pa.Table, pa.Buffer]:
    """The table of an IPC file, zero-copy over the one buffer it was read into."""
    buf = pa.allocate_buffer(
        reader.size(suffix)
    )  # not zero-filled: the read touches each page once
    reader.read_into(suffix, [memoryview(buf)])
    return pa.ipc.open_file(pa.BufferReader(buf)).read_all(), buf


def read_ipc(reader: PartReader, suffix: str) -> pa.Table:
    return read_ipc_buffer(reader, suffix)[0]


class TableCodec(Codec):
    """``pyarrow.Table`` (schema, metadata and chunking kept)."""

    id = "pyarrow.Table/ipc"
    version = 1
    types = ("pyarrow.lib.Table",)
    library = "pyarrow"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", obj)
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return read_ipc(reader, ".arrow")


class RecordBatchCodec(Codec):
    """``pyarrow.RecordBatch``."""

    id = "pyarrow.RecordBatch/ipc"
    version = 1
    types = ("pyarrow.lib.RecordBatch",)
    library = "pyarrow"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", obj)
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        table = read_ipc(reader, ".arrow")
        batches = table.to_batches()
        if len(batches) == 1:
            return batches[0]
        return (
            table.combine_chunks().to_batches()[0]
            if table.num_rows
            else pa.RecordBatch.from_arrays(
                [pa.array([], type=f.type) for f in table.schema], schema=table.schema
            )
        )


class ArrayCodec(Codec):
    """``pyarrow.Array`` of any type (one column of a batch)."""

    id = "pyarrow.Array/ipc"
    version = 1
    types = ("pyarrow.lib.Array",)
    library = "pyarrow"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", pa.RecordBatch.from_arrays([obj], names=["values"]))
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        column = read_ipc(reader, ".arrow").column(0)
        if column.num_chunks == 1:
            return column.chunk(0)
        return column.combine_chunks()


class ChunkedArrayCodec(Codec):
    """``pyarrow.ChunkedArray`` (its chunks kept)."""

    id = "pyarrow.ChunkedArray/ipc"
    version = 1
    types = ("pyarrow.lib.ChunkedArray",)
    library = "pyarrow"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", pa.Table.from_arrays([obj], names=["values"]))
        return {"chunks": [len(c) for c in obj.chunks]}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        column = read_ipc(reader, ".arrow").column(0)
        lengths = meta.get("chunks")
        if lengths is not None and [len(c) for c in column.chunks] != lengths:
            whole = column.combine_chunks()  # IPC drops empty chunks: put the layout back
            starts = [sum(lengths[:i]) for i in range(len(lengths))]
            column = pa.chunked_array(
                [whole.slice(s, n) for s, n in zip(starts, lengths)], type=column.type
            )
        return column
