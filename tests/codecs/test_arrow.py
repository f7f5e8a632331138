"""pyarrow Table, RecordBatch, Array, ChunkedArray as IPC, without pickle; slices stay small."""

from __future__ import annotations

from pathlib import Path

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


def _dict_chunks(*chunks):
    return [
        pa.table({"d": pa.array(c, pa.string()).dictionary_encode(), "n": np.arange(len(c))})
        for c in chunks
    ]


def _assert_exact(back, value):
    assert type(back) is type(value)
    assert back.equals(value)
    if hasattr(value, "schema"):
        assert back.schema == value.schema and back.schema.metadata == value.schema.metadata
    else:
        assert back.type == value.type


def test_concat_tables_with_different_dictionaries_round_trips_exactly():
    t = pa.concat_tables(_dict_chunks(["a", "b", "a"], ["c", "a"], []))
    back = rc.loads(rc.dumps({"t": t}), allow_pickle=False)["t"]
    _assert_exact(back, t)
    # each chunk keeps its own dictionary and indices
    for mine, theirs in zip(back.column("d").chunks, t.column("d").chunks):
        assert mine.dictionary.equals(theirs.dictionary) and mine.indices.equals(theirs.indices)
    column = t.column("d")
    back = rc.loads(rc.dumps(column), allow_pickle=False)
    _assert_exact(back, column)
    assert [c.dictionary.to_pylist() for c in back.chunks] == [["a", "b"], ["c", "a"], []]


def test_nested_dictionaries_across_chunks():
    def chunk(values):
        inner = pa.array(values).dictionary_encode()
        return pa.table({"s": pa.StructArray.from_arrays([inner], names=["k"])})

    t = pa.concat_tables([chunk(["x", "y"]), chunk(["z"])])
    back = rc.loads(rc.dumps(t), allow_pickle=False)
    _assert_exact(back, t)


# cases made of types that older pyarrow versions lack: (the type, the pyarrow that added it)
NEEDS = {
    "large-list-view": ("list_view", "16.0"),
    "string-view": ("string_view", "16.0"),
    "uuid": ("uuid", "18.0"),
    "json": ("json_", "19.0"),
}


def _nested(name: str):
    """The case, or a skip naming this pyarrow and the one that added its type."""
    if name in NEEDS and not hasattr(pa, NEEDS[name][0]):
        tp, since = NEEDS[name]
        pytest.skip(f"pyarrow {pa.__version__} has no pa.{tp}() (added in pyarrow {since})")
    return NESTED[name]()


NESTED = {
    "list-of-struct": lambda: pa.array(
        [[{"a": 1, "b": "x"}], [], None, [{"a": None, "b": None}]],
        pa.list_(pa.struct([("a", pa.int16()), ("b", pa.string())])),
    ),
    "large-list-view": lambda: pa.array([[1, 2], None, []], pa.list_view(pa.int64())),
    "map": lambda: pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int32())),
    "fixed-size-list": lambda: pa.array([[1, 2], [3, 4], None], pa.list_(pa.float32(), 2)),
    "dense-union": lambda: pa.UnionArray.from_dense(
        pa.array([0, 1, 0], pa.int8()),
        pa.array([0, 0, 1], pa.int32()),
        [pa.array([1, 2]), pa.array(["s"])],
    ),
    "string-view": lambda: pa.array(["a", None, "long string over twelve bytes"], pa.string_view()),
    "decimal256": lambda: pa.array([1, None], pa.decimal256(50, 3)),
    "run-end": lambda: pa.RunEndEncodedArray.from_arrays([2, 5], ["a", None]),
    "uuid": lambda: pa.array([b"0123456789abcdef", None], pa.uuid()),
    "json": lambda: pa.array(['{"a": 1}', None], pa.json_()),
    "fixed-shape-tensor": lambda: pa.FixedShapeTensorArray.from_numpy_ndarray(
        np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    ),
    "duration-ns": lambda: pa.array([1, None], pa.duration("ns")),
    "dictionary-of-lists": lambda: pa.DictionaryArray.from_arrays(
        pa.array([1, 0, None, 1], pa.int32()), pa.array([[1], [2, 3]])
    ),
}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_nested_and_extension_types_round_trip_exactly(name):
    value = _nested(name)
    back = rc.loads(rc.dumps(value), allow_pickle=False)
    _assert_exact(back, value)
    table = pa.table({"c": value}).replace_schema_metadata({"k": "v"})
    _assert_exact(rc.loads(rc.dumps(table), allow_pickle=False), table)


@pytest.mark.parametrize("name", sorted(NESTED))
def test_slices_of_nested_and_extension_types(name):
    value = _nested(name)
    for piece in (value.slice(1), value.slice(1, 1), value.slice(len(value))):
        back = rc.loads(rc.dumps(piece), allow_pickle=False)
        _assert_exact(back, piece)


class _Money(pa.ExtensionType):
    def __init__(self):
        super().__init__(pa.int64(), "test.money")

    def __arrow_ext_serialize__(self):
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()


def test_registered_python_extension_type_round_trips():
    pa.register_extension_type(_Money())
    try:
        value = pa.ExtensionArray.from_storage(_Money(), pa.array([1, None, 3]))
        back = rc.loads(rc.dumps(value), allow_pickle=False)
        _assert_exact(back, value)
    finally:
        pa.unregister_extension_type("test.money")


def test_an_unregistered_extension_type_is_refused_naming_the_column_and_type():
    """Read where the extension type is unknown, a column would come back as its storage
    type: refused, naming the column and the type; loads once the type is registered."""
    pa.register_extension_type(_Money())
    try:
        value = pa.ExtensionArray.from_storage(_Money(), pa.array([1, None, 3]))
        table = pa.table({"price": value, "n": [1, 2, 3]})
        data = rc.dumps({"t": table, "a": value})
    finally:
        pa.unregister_extension_type("test.money")
    with pytest.raises(
        rc.DeserializationError, match=r"column 'price' has the extension type 'test\.money'"
    ):
        rc.loads(data, allow_pickle=False)
    nested = pa.table({"s": pa.StructArray.from_arrays([value], names=["p"])})
    pa.register_extension_type(_Money())
    try:
        nested_data = rc.dumps(nested)
        back = rc.loads(data, allow_pickle=False)
        _assert_exact(back["t"], table)
        _assert_exact(back["a"], value)
    finally:
        pa.unregister_extension_type("test.money")
    with pytest.raises(rc.DeserializationError, match=r"column 's\.p' has the extension type"):
        rc.loads(nested_data, allow_pickle=False)


DATA = Path(__file__).resolve().parent / "data"


def test_extension_types_of_a_newer_pyarrow_load_exactly_or_are_refused_naming_them():
    """``uuid`` and ``json`` columns written by pyarrow 26 (see data/pyarrow-26.0.1): exact
    where pyarrow has those types, refused by name where it has not (pyarrow 15 read them
    as fixed_size_binary and string, silently)."""
    data = (DATA / "pyarrow-26.0.1" / "uuid_json_table.rcb").read_bytes()
    if not (hasattr(pa, "uuid") and hasattr(pa, "json_")):
        with pytest.raises(rc.DeserializationError) as info:
            rc.loads(data, allow_pickle=False)
        message = str(info.value)
        assert "arrow." in message and f"pyarrow {pa.__version__}" in message
        assert "pyarrow 26.0.1" in message
        return
    back = rc.loads(data, allow_pickle=False)
    expected = pa.table(
        {
            "id": pa.array([b"0123456789abcdef", None], pa.uuid()),
            "n": pa.array([1, 2], pa.int64()),
            "doc": pa.array(['{"a": 1}', None], pa.json_()),
        }
    )
    _assert_exact(back, expected)
