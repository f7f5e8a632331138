"""pyarrow Table, RecordBatch, Array, ChunkedArray as IPC, without pickle; slices stay small."""

from __future__ import annotations

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

import remote_codecs as rc  # noqa: E402


def _table():
    return pa.table(
        {
            "i": pa.array([1, None, 3], pa.int64()),
            "s": pa.array(["a", None, "ccc"]),
            "l": pa.array([[1, 2], [], None], pa.list_(pa.int32())),
            "t": pa.array([0, 1, 2], pa.timestamp("ms", tz="UTC")),
            "f": pa.array([1.5, 2.5, None]),
            "st": pa.array([{"x": 1}, {"x": 2}, None], pa.struct([("x", pa.int8())])),
        }
    ).replace_schema_metadata({"origin": "test"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("table", _table()),
        ("chunked-table", pa.concat_tables([_table(), _table()])),
        ("record-batch", _table().to_batches()[0]),
        ("empty-batch", pa.RecordBatch.from_pylist([], schema=_table().schema)),
        ("array", pa.array([1.5, None, 2.5])),
        ("dictionary-array", pa.array(["a", "b", "a"]).dictionary_encode()),
        ("chunked-array", pa.chunked_array([[1, 2], [3], []])),
        ("empty-chunked-array", pa.chunked_array([], type=pa.string())),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_round_trip_without_pickle(name, value):
    data = rc.dumps([value])
    assert rc.inspect(data).skeleton_kind == "json"
    back = rc.loads(data, allow_pickle=False)[0]
    assert type(back) is type(value)
    assert back.equals(value)
    if hasattr(value, "schema"):
        assert back.schema.metadata == value.schema.metadata
    if isinstance(value, pa.ChunkedArray):
        assert back.num_chunks == value.num_chunks


def test_a_small_slice_of_a_large_table_encodes_small():
    n = (512 << 20) // 16
    big = pa.table({"a": np.arange(n, dtype=np.int64), "b": np.ones(n)})
    assert big.nbytes >= 512 << 20
    piece = big.slice(1000, 10)
    data = rc.dumps(piece)
    assert len(data) < 16 << 10, len(data)
    assert rc.loads(data).equals(piece)
    strings = pa.table({"s": pa.array([f"row-{i}" for i in range(1_000_000)])}).slice(500, 10)
    data = rc.dumps(strings)
    assert len(data) < 16 << 10 and rc.loads(data).equals(strings)
