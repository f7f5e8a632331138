"""numpy, tested from the outside: hypothesis' array strategies over every non-object
dtype (byte-swapped and structured included), zero-size shapes, Fortran order and
non-contiguous views; subclasses and numpy scalars; crafted .npy parts.

Exact means: same type, dtype (byte order included), shape, bytes (NaN payloads
included), and C/F contiguity for contiguous inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import remote_codecs as rc  # noqa: E402
from bundles import edit_manifest  # noqa: E402


def _round_trip(value):
    data = rc.dumps({"v": value})
    assert not rc.inspect(data).needs_pickle
    return rc.loads(data, allow_pickle=False)["v"]


def _same_bytes(a, b):
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _assert_exact(back, arr):
    assert type(back) is type(arr)
    assert back.dtype == arr.dtype and back.dtype.str == arr.dtype.str
    assert back.shape == arr.shape
    assert _same_bytes(back, arr)
    if arr.flags.c_contiguous or arr.flags.f_contiguous:
        assert back.flags.c_contiguous == arr.flags.c_contiguous
        assert back.flags.f_contiguous == arr.flags.f_contiguous
    else:
        assert back.flags.c_contiguous  # a strided view comes back as a C-ordered copy


SCALAR_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"),
    hnp.complex_number_dtypes(endianness="?"),
    hnp.datetime64_dtypes(endianness="?"),
    hnp.timedelta64_dtypes(endianness="?"),
    hnp.byte_string_dtypes(endianness="?"),
    hnp.unicode_string_dtypes(endianness="?"),
)
DTYPES = st.one_of(
    SCALAR_DTYPES,
    hnp.array_dtypes(SCALAR_DTYPES, min_size=1, max_size=3),
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(DTYPES, SHAPES, elements=None, fill=st.nothing()) | hnp.arrays(DTYPES, SHAPES))
def test_arrays_of_every_dtype_round_trip_exactly(arr):
    _assert_exact(_round_trip(arr), arr)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(SCALAR_DTYPES, hnp.array_shapes(min_dims=2, max_dims=4, min_side=0, max_side=4)))
def test_fortran_order_is_kept(arr):
    f = np.asfortranarray(arr)
    _assert_exact(_round_trip(f), f)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(SCALAR_DTYPES, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)),
    st.data(),
)
def test_non_contiguous_views_round_trip(arr, data):
    index = data.draw(hnp.basic_indices(arr.shape, allow_newaxis=True, allow_ellipsis=True))
    view = arr[index]
    if isinstance(view, np.ndarray):
        _assert_exact(_round_trip(view), view)
    t = arr.T[..., ::2]
    _assert_exact(_round_trip(t), t)


def test_void_arrays():
    arr = np.frombuffer(bytes(range(21)), dtype="V7")
    _assert_exact(_round_trip(arr), arr)


def test_nan_payloads_are_kept():
    bits = np.array([0x7FF8000000000001, 0xFFF0000000000123, 0x7FF4000000000000], dtype=np.uint64)
    nans = bits.view(np.float64)
    back = _round_trip(nans)
    assert np.array_equal(back.view(np.uint64), bits)
    half = np.array([0x7E01, 0xFE55], dtype=np.uint16).view(np.float16)
    assert np.array_equal(_round_trip(half).view(np.uint16), half.view(np.uint16))
    scalar = nans[0]
    assert _round_trip(scalar).view(np.uint64) == bits[0]


# -- subclasses and scalars -------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0], fill_value=-9.0),
        lambda: np.ma.masked_array(np.arange(6).reshape(2, 3), mask=np.eye(2, 3), hard_mask=True),
        lambda: np.ma.masked_array([1, 2], mask=np.ma.nomask),
        lambda: np.ma.masked_array(np.zeros(2, "i4,f8"), mask=[(0, 1), (1, 0)]),
        lambda: np.ma.masked_invalid(np.array([1.0, np.nan, np.inf])),
        lambda: np.ma.masked_array(np.array(["a", "bc"]), mask=[1, 0], fill_value="zz"),
    ],
    ids=["float", "hard-2d", "nomask", "structured", "invalid", "str"],
)
def test_masked_arrays_without_pickle(make):
    m = make()
    back = _round_trip(m)
    assert type(back) is np.ma.MaskedArray and back.dtype == m.dtype and back.shape == m.shape
    assert _same_bytes(back.data, m.data)
    assert (back.mask is np.ma.nomask) == (m.mask is np.ma.nomask)
    assert np.array_equal(np.ma.getmaskarray(back), np.ma.getmaskarray(m))
    assert back.hardmask == m.hardmask
    assert _same_bytes(np.asarray(back.fill_value), np.asarray(m.fill_value))


def test_recarrays_and_structured_arrays():
    rec = np.rec.fromarrays(
        [np.arange(3), np.array(["a", "bb", "c"]), np.ones(3, ">f4")], names="x,y,z"
    )
    back = _round_trip(rec)
    assert type(back) is np.recarray and back.dtype == rec.dtype
    assert np.array_equal(back.x, rec.x) and list(back.y) == list(rec.y)
    nested = np.zeros(
        3, dtype=[("a", "<i2"), ("b", [("c", ">f8", (2,)), ("d", "S3")]), ("e", "?")], order="C"
    )
    nested["b"]["d"] = [b"x", b"yy", b"zzz"]
    _assert_exact(_round_trip(nested), nested)
    aligned = np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "<f8")], align=True))
    _assert_exact(_round_trip(aligned), aligned)


def test_matrix_comes_back_as_matrix():
    m = np.matrix([[1, 2], [3, 4]], dtype=np.int16)
    back = _round_trip(m)
    assert type(back) is np.matrix and back.dtype == m.dtype and (back == m).all()
    assert (back @ back == m @ m).all()


@pytest.mark.parametrize(
    "value",
    [
        np.bytes_(b"ab\x00c"),
        np.str_("héllo"),
        np.float16(1.5),
        np.datetime64("2024-02-29T12:00", "m"),
        np.timedelta64(-3, "D"),
        np.zeros(1, "i4,f8")[0],
        np.complex64(1 + 2j),
        np.dtype(">f8"),
        np.dtype([("a", "<i2"), ("b", ">U3")]),
    ],
    ids=repr,
)
def test_numpy_scalars_and_dtypes_without_pickle(value):
    back = _round_trip(value)
    assert type(back) is type(value)
    if isinstance(value, np.generic):
        assert back.dtype == value.dtype and back.tobytes() == value.tobytes()
    else:
        assert back == value


def test_object_arrays_still_need_pickle():
    arr = np.array([{"a": 1}, None], dtype=object)
    data = rc.dumps(arr)
    assert rc.inspect(data).needs_pickle
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(data, allow_pickle=False)


# -- crafted parts ------------------------------------------------------------------------------


def _edit_meta(data, edit):
    return edit_manifest(data, lambda manifest: edit(manifest["parts"][0]["meta"]))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(shape=[1 << 40]),  # would allocate 8 TiB before finding the file short
        lambda m: m.update(shape=[1 << 20, 1 << 20, 1 << 20]),
        lambda m: m.update(shape=[8, 2]),  # same size, header says otherwise
        lambda m: m.update(shape=[-16]),
        lambda m: m.update(descr="'<f4'"),
        lambda m: m.update(descr="'|O'"),
        lambda m: m.update(descr="__import__('os')"),
        lambda m: m.update(descr="[" * 10000),
        lambda m: m.update(header_size=10**9),
        lambda m: m.update(fortran_order="yes"),
        lambda m: m.update(subclass="memmap"),
    ],
)
def test_crafted_array_meta_is_refused_before_allocating(edit):
    data = rc.dumps(np.arange(16, dtype=np.float64))
    with pytest.raises(rc.DeserializationError):
        rc.loads(_edit_meta(data, edit), allow_pickle=False)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(data="AAAA"),
        lambda m: m.update(descr="'<f8'", data="!!"),
        lambda m: m.update(descr="'|O'"),
    ],
)
def test_crafted_scalar_meta_is_refused(edit):
    data = rc.dumps(np.float32(1.5))
    with pytest.raises(rc.DeserializationError):
        rc.loads(_edit_meta(data, edit), allow_pickle=False)
