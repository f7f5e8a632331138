"""numpy arrays and scalars: every non-object dtype and layout, no pickle, typed parts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import remote_codecs as rc

base = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
ARRAYS = {
    "float64": base,
    "0-d": np.array(3.5),
    "empty": np.zeros((0, 3)),
    "empty-1d": np.array([], dtype=np.int8),
    "fortran": np.asfortranarray(base),
    "non-contiguous": base[:, ::2, 1::2],
    "transposed": base.transpose(2, 0, 1),
    "negative-stride": base[::-1],
    "big-endian": base.astype(">f8"),
    "complex": (base + 1j * base).astype(np.complex64),
    "bool": base > 3,
    "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "float16": base.astype(np.float16),
    "longdouble": base.astype(np.longdouble),
    "datetime": np.array(["2020-01-01T00:00:00.123456789", "NaT"], dtype="M8[ns]"),
    "timedelta": np.array([1, -5], dtype="m8[s]"),
    "unicode": np.array(["a", "héllo", "日本"]),
    "bytes": np.array([b"ab", b"\x00c"]),
    "structured": np.array(
        [(1, 2.5, "x"), (3, -1.0, "yz")], dtype=[("a", "<i4"), ("b", ">f8"), ("c", "U3")]
    ),
    "nested-structured": np.zeros(3, dtype=[("p", [("x", "f4"), ("y", "f4")]), ("n", "i8", (2,))]),
    "aligned-structured": np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "f8")], align=True)),
    "void": np.array([b"\x01\x02"], dtype="V2"),
    "large": np.random.default_rng(0).random((512, 1024)),
}


def _check(a, b):
    assert type(b) is np.ndarray
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_array_round_trip_bytes_and_folder(name, tmp_path):
    a = ARRAYS[name]
    data = rc.dumps({"a": a})
    m = rc.inspect(data)
    assert m.skeleton_kind == "json" and [p.codec for p in m.parts] == ["numpy.ndarray/npy"]
    _check(a, rc.loads(data, allow_pickle=False)["a"])
    rc.save(a, tmp_path / "b")
    _check(a, rc.load(tmp_path / "b", allow_pickle=False))


def test_fortran_layout_is_kept():
    back = rc.loads(rc.dumps(np.asfortranarray(base)))
    assert back.flags.f_contiguous


def test_part_file_is_a_standard_npy(tmp_path):
    a = ARRAYS["structured"]
    rc.save([a], tmp_path / "b")
    _check(a, np.load(tmp_path / "b" / "0.npy", allow_pickle=False))


def test_memmap_round_trips_as_ndarray(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.int32, shape=(10,))
    mm[:] = np.arange(10)
    _check(np.arange(10, dtype=np.int32), rc.loads(rc.dumps(mm)))


def test_object_arrays_travel_by_pickle():
    a = np.array([1, "x", None], dtype=object)
    data = rc.dumps(a)
    assert rc.inspect(data).skeleton_kind == "pickle"
    assert list(rc.loads(data)) == [1, "x", None]
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(data, allow_pickle=False)


@pytest.mark.parametrize(
    "scalar",
    [
        np.float32(1.5),
        np.int8(-3),
        np.uint64(2**64 - 1),
        np.complex128(1 + 2j),
        np.bool_(True),
        np.datetime64("2021-03-04T05:06", "m"),
        np.timedelta64(7, "D"),
        np.str_("ab"),
        np.float16(0.1),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0],
    ],
    ids=repr,
)
def test_scalars_keep_their_type(scalar):
    back = rc.loads(rc.dumps([scalar]), allow_pickle=False)[0]
    assert type(back) is type(scalar) and back.dtype == scalar.dtype and back == scalar


def test_dtype_round_trip():
    dt = np.dtype([("a", ">i4"), ("b", "M8[us]")])
    assert rc.loads(rc.dumps({"dt": dt}), allow_pickle=False)["dt"] == dt


@dataclasses.dataclass
class Holder:
    name: str
    weights: np.ndarray


def test_arrays_inside_pickled_objects_are_still_typed_parts():
    h = Holder("w", np.arange(1000.0))
    data = rc.dumps({"h": h, "again": h.weights})
    m = rc.inspect(data)
    assert m.skeleton_kind == "pickle"
    assert [p.codec for p in m.parts] == ["numpy.ndarray/npy"]  # shared array stored once
    back = rc.loads(data)
    _check(h.weights, back["h"].weights)
    assert back["again"] is back["h"].weights


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(
        dtype=hnp.scalar_dtypes() | hnp.byte_string_dtypes() | hnp.unicode_string_dtypes(),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    ),
    st.sampled_from(["C", "F", "strided"]),
)
def test_arrays_property(a, layout):
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = a[::-1]
    back = rc.loads(rc.dumps(a), allow_pickle=False)
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)
