"""pyarrow ``Table``, ``RecordBatch``, ``Array`` and ``ChunkedArray`` as Arrow IPC files. No pickle.

Sliced data is written as the slice, not its parent's buffers (Arrow's IPC writer
truncates them), and reading is zero-copy over one buffer per part.

A column of an extension type that this pyarrow does not know (``arrow.uuid`` written by
pyarrow 18+ and read by pyarrow 15, or a Python extension type not registered here) would
read back as its storage type: such a part is refused, naming the column and the type.

A part is an IPC *file*, except for data whose dictionary columns span several record
batches (what ``pa.concat_tables`` makes): the file format holds one dictionary per
field, so those are written in the IPC *stream* format, which keeps each chunk's own
dictionary exactly. The reader tells the two apart by their first bytes.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.ipc

from ..codec import Codec, PartReader, PartWriter
from ..errors import DeserializationError

_FILE_MAGIC = b"ARROW1"


def _has_dictionary(tp: pa.DataType) -> bool:
    return pa.types.is_dictionary(tp) or any(
        _has_dictionary(tp.field(i).type) for i in range(tp.num_fields)
    )


def _needs_stream(table: pa.Table | pa.RecordBatch) -> bool:
    """Whether dictionaries may differ between batches (the IPC file format refuses that)."""
    if isinstance(table, pa.RecordBatch) or not any(_has_dictionary(f.type) for f in table.schema):
        return False
    return any(column.num_chunks > 1 for column in table.columns)


def write_ipc(writer: PartWriter, suffix: str, table: pa.Table | pa.RecordBatch) -> None:
    """Write ``table`` as an Arrow IPC file (or stream: see the module docstring)."""
    new = pa.ipc.new_stream if _needs_stream(table) else pa.ipc.new_file
    with writer.open(suffix) as f, new(f, table.schema) as ipc:
        if isinstance(table, pa.RecordBatch):
            ipc.write_batch(table)
        else:
            ipc.write_table(table)


def read_ipc_buffer(reader: PartReader, suffix: str) -> tuple[pa.Table, pa.Buffer]:
    """The table of an IPC file or stream, zero-copy over the one buffer it was read into."""
    buf = pa.allocate_buffer(
        reader.size(suffix)
    )  # not zero-filled: the read touches each page once
    reader.read_into(suffix, [memoryview(buf)])
    source = pa.BufferReader(buf)
    if buf.slice(0, len(_FILE_MAGIC)).to_pybytes() == _FILE_MAGIC:
        return pa.ipc.open_file(source).read_all(), buf
    return pa.ipc.open_stream(source).read_all(), buf


def read_ipc(reader: PartReader, suffix: str) -> pa.Table:
    return read_ipc_buffer(reader, suffix)[0]


_EXTENSION_NAME = b"ARROW:extension:name"


def _unknown_extension(field: pa.Field, path: str) -> tuple[str, str, str] | None:
    """(column path, extension name, storage type) of the first field under ``field`` whose
    extension type the IPC reader did not know (it keeps the name in the field metadata)."""
    name = (field.metadata or {}).get(_EXTENSION_NAME)
    if name is not None:
        return path, name.decode("utf-8", "replace"), str(field.type)
    tp = field.type
    if isinstance(tp, pa.BaseExtensionType):
        tp = tp.storage_type
    for i in range(tp.num_fields):
        child = tp.field(i)
        found = _unknown_extension(child, f"{path}.{child.name}")
        if found:
            return found
    return None


def read_known_ipc(reader: PartReader, suffix: str) -> pa.Table:
    """``read_ipc``, refusing a column whose extension type this pyarrow does not know."""
    table = read_ipc(reader, suffix)
    for field in table.schema:
        found = _unknown_extension(field, field.name)
        if found:
            path, name, storage = found
            written = getattr(reader, "written_version", None)
            by = f" (written by pyarrow {written})" if written else ""
            raise DeserializationError(
                f"Arrow column {path!r} has the extension type {name!r}{by}, which pyarrow "
                f"{pa.__version__} does not know: it would load as its storage type "
                f"{storage}, not as written. Install a pyarrow that has {name!r}, or register "
                "that extension type (pa.register_extension_type) before loading"
            )
    return table


class TableCodec(Codec):
    """``pyarrow.Table`` (schema, metadata and chunking kept)."""

    id = "pyarrow.Table/ipc"
    version = 1
    types = ("pyarrow.lib.Table",)
    library = "pyarrow"
    # Arrow IPC: the format is specified and every pyarrow reads what another wrote
    version_policy = "stable"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", obj)
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        return read_known_ipc(reader, ".arrow")


class RecordBatchCodec(Codec):
    """``pyarrow.RecordBatch``."""

    id = "pyarrow.RecordBatch/ipc"
    version = 1
    types = ("pyarrow.lib.RecordBatch",)
    library = "pyarrow"
    # Arrow IPC: the format is specified and every pyarrow reads what another wrote
    version_policy = "stable"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", obj)
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        table = read_known_ipc(reader, ".arrow")
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
    # Arrow IPC: the format is specified and every pyarrow reads what another wrote
    version_policy = "stable"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", pa.RecordBatch.from_arrays([obj], names=["values"]))
        return {}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        column = read_known_ipc(reader, ".arrow").column(0)
        if column.num_chunks == 1:
            return column.chunk(0)
        return column.combine_chunks()


class ChunkedArrayCodec(Codec):
    """``pyarrow.ChunkedArray`` (its chunks kept)."""

    id = "pyarrow.ChunkedArray/ipc"
    version = 1
    types = ("pyarrow.lib.ChunkedArray",)
    library = "pyarrow"
    # Arrow IPC: the format is specified and every pyarrow reads what another wrote
    version_policy = "stable"

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        write_ipc(writer, ".arrow", pa.Table.from_arrays([obj], names=["values"]))
        return {"chunks": [len(c) for c in obj.chunks]}

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        column = read_known_ipc(reader, ".arrow").column(0)
        lengths = meta.get("chunks")
        if lengths is not None and [len(c) for c in column.chunks] != lengths:
            column = _relayout(column, [int(n) for n in lengths])
        return column


def _empty(tp: pa.DataType, like: list[pa.Array]) -> pa.Array:
    try:
        return pa.array([], type=tp)
    except (pa.ArrowException, TypeError, ValueError):
        return like[0].slice(0, 0)


def _relayout(column: pa.ChunkedArray, lengths: list[int]) -> pa.ChunkedArray:
    """Put back the chunk layout the IPC round trip lost (it drops empty chunks), keeping
    each non-empty chunk (and its dictionary) as read."""
    chunks = list(column.chunks)
    if [len(c) for c in chunks] == [n for n in lengths if n]:
        it = iter(chunks)
        rebuilt = [next(it) if n else _empty(column.type, chunks) for n in lengths]
        return pa.chunked_array(rebuilt, type=column.type)
    whole = column.combine_chunks()
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    return pa.chunked_array([whole.slice(s, n) for s, n in zip(starts, lengths)], type=column.type)
