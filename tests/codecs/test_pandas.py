"""pandas through Arrow IPC: exact under assert_frame_equal / assert_series_equal with
default strictness (attrs and DatetimeIndex.freq included), and pickle only where Arrow
cannot represent a column exactly, which the manifest says."""

from __future__ import annotations

import datetime
import decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import remote_codecs as rc

N = 6
rng = np.random.default_rng(0)


class Thing:
    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return type(other) is Thing and other.v == self.v

    def __repr__(self):
        return f"Thing({self.v})"


def _frame(**cols):
    return pd.DataFrame(cols)


# name -> (frame, needs pickle)
FRAMES = {
    "int64": (_frame(a=np.arange(N)), False),
    "int8-uint64": (
        _frame(a=np.arange(N, dtype="int8"), b=np.arange(N, dtype="uint64") * 2**60),
        False,
    ),
    "float-with-nan": (_frame(a=[1.5, np.nan, -np.inf, 0.0, -0.0, 3.0]), False),
    "float32-float16": (_frame(a=np.ones(N, "float32"), b=np.ones(N, "float16")), False),
    "bool": (_frame(a=[True, False] * 3), False),
    "nullable-Int64": (_frame(a=pd.array([1, None, 3, 4, None, 6], dtype="Int64")), False),
    "nullable-int8-uint32": (
        _frame(a=pd.array([1, None] * 3, dtype="Int8"), b=pd.array([None, 7] * 3, dtype="UInt32")),
        False,
    ),
    "nullable-Float64": (
        _frame(a=pd.array([1.5, None, 2.5, None, 0.0, 1.0], dtype="Float64")),
        False,
    ),
    "nullable-boolean": (
        _frame(a=pd.array([True, None, False, True, None, False], dtype="boolean")),
        False,
    ),
    "str-with-nulls": (_frame(a=pd.Series(["x", None, "z", "", "é", None], dtype="str")), False),
    "string-python": (
        _frame(a=pd.array(["x", None, "y", "z", None, "w"], dtype="string[python]")),
        False,
    ),
    "string-pyarrow": (
        _frame(a=pd.array(["x", None, "y", "z", None, "w"], dtype="string[pyarrow]")),
        False,
    ),
    "object-strings-none": (
        _frame(a=pd.Series(["a", None, "c", "d", "e", "f"], dtype=object)),
        False,
    ),
    "object-strings-nan": (
        _frame(a=pd.Series(["a", np.nan, "c", "d", "e", "f"], dtype=object)),
        False,
    ),
    "object-bytes": (
        _frame(a=pd.Series([b"a", b"\x00", b"c", b"", b"e", b"f"], dtype=object)),
        False,
    ),
    "categorical-ordered": (
        _frame(
            a=pd.Categorical(
                ["lo", "hi", "mid", "lo", None, "hi"], categories=["lo", "mid", "hi"], ordered=True
            )
        ),
        False,
    ),
    "categorical-int-categories": (_frame(a=pd.Categorical([3, 1, 2, 3, 1, 2])), False),
    "categorical-unordered-unused": (
        _frame(a=pd.Categorical(["a"] * 6, categories=["a", "b", "zz"])),
        False,
    ),
    "datetime-naive-ns": (
        _frame(
            a=pd.to_datetime(
                [
                    "2020-01-01",
                    None,
                    "2021-06-30 12:00:00.123456789",
                    "1970-01-01",
                    "2262-04-11",
                    "1677-09-22",
                ],
                format="ISO8601",
            ).as_unit("ns")
        ),
        False,
    ),
    "datetime-naive-us": (_frame(a=pd.date_range("2020", periods=N, freq="h", unit="us")), False),
    "datetime-tz": (
        _frame(a=pd.date_range("2020-03-28", periods=N, freq="12h", tz="Europe/Paris")),
        False,
    ),
    "datetime-tz-utc-with-nat": (
        _frame(
            a=pd.to_datetime(
                ["2020-01-01", None, "2020-01-03", None, "2020-01-05", "2020-01-06"], utc=True
            )
        ),
        False,
    ),
    "timedelta": (_frame(a=pd.to_timedelta([1, 2, None, 4, 5, 6], unit="s")), False),
    "period": (_frame(a=pd.period_range("2020-01", periods=N, freq="M")), False),
    "period-quarterly": (
        _frame(
            a=pd.PeriodIndex(["2020Q1", None, "2021Q3", "2020Q2", "2020Q3", "2020Q4"], freq="Q")
        ),
        False,
    ),
    "interval": (
        _frame(a=pd.arrays.IntervalArray.from_breaks(np.arange(N + 1), closed="left")),
        False,
    ),
    "interval-float-both": (
        _frame(a=pd.arrays.IntervalArray.from_breaks(np.linspace(0, 1, N + 1), closed="both")),
        False,
    ),
    "arrow-dtype": (
        _frame(a=pd.array([1, None, 3, 4, 5, 6], dtype=pd.ArrowDtype(pa.int64()))),
        False,
    ),
    "arrow-list-dtype": (
        _frame(
            a=pd.array([[1], [], None, [2, 3], [4], [5]], dtype=pd.ArrowDtype(pa.list_(pa.int64())))
        ),
        False,
    ),
    "range-index-named": (
        pd.DataFrame({"a": range(N)}, index=pd.RangeIndex(10, 10 + 2 * N, 2, name="step")),
        False,
    ),
    "named-int-index": (
        pd.DataFrame({"a": range(N)}, index=pd.Index(np.arange(N) * 7, name="id")),
        False,
    ),
    "string-index": (
        pd.DataFrame({"a": range(N)}, index=pd.Index(list("abcdef"), name="key")),
        False,
    ),
    "datetime-index-freq": (
        pd.DataFrame(
            {"a": range(N)}, index=pd.date_range("2021-01-01", periods=N, freq="B", name="day")
        ),
        False,
    ),
    "timedelta-index-freq": (
        pd.DataFrame({"a": range(N)}, index=pd.timedelta_range("1D", periods=N, freq="2h")),
        False,
    ),
    "period-index": (
        pd.DataFrame({"a": range(N)}, index=pd.period_range("2000", periods=N, freq="Y")),
        False,
    ),
    "interval-index": (pd.DataFrame({"a": range(N)}, index=pd.interval_range(0, N)), False),
    "categorical-index": (
        pd.DataFrame(
            {"a": range(N)},
            index=pd.CategoricalIndex(
                list("abcabc"), categories=list("cba"), ordered=True, name="c"
            ),
        ),
        False,
    ),
    "multiindex-rows": (
        pd.DataFrame(
            {"a": range(N)},
            index=pd.MultiIndex.from_product([["x", "y"], [1, 2, 3]], names=["l1", "l2"]),
        ),
        False,
    ),
    "multiindex-columns": (
        pd.DataFrame(
            np.arange(12).reshape(2, 6),
            columns=pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]], names=["top", None]),
        ),
        False,
    ),
    "multiindex-with-datetime-level": (
        pd.DataFrame(
            {"v": range(4)},
            index=pd.MultiIndex.from_product(
                [pd.date_range("2020", periods=2, tz="UTC"), ["p", "q"]]
            ),
        ),
        False,
    ),
    "non-string-labels": (pd.DataFrame({1: [1.0], 2.5: [2.0], (3, "t"): [3.0], None: [4.0]}), True),
    "int-column-labels": (pd.DataFrame(np.ones((2, 3)), columns=[10, 20, 30]), False),
    "datetime-column-labels": (
        pd.DataFrame(np.ones((2, 2)), columns=pd.to_datetime(["2020-01-01", "2020-01-02"])),
        False,
    ),
    "duplicate-columns": (pd.DataFrame([[1, 2, 3]], columns=["a", "a", "b"]), False),
    "empty": (pd.DataFrame(), False),
    "zero-rows": (
        pd.DataFrame(
            {"a": pd.Series([], dtype="Int64"), "b": pd.Series([], dtype="datetime64[ns]")}
        ),
        False,
    ),
    "zero-columns-with-index": (pd.DataFrame(index=pd.Index(["r1", "r2"], name="rows")), False),
    "complex": (_frame(a=np.arange(N) * (1 + 2j)), False),
    "complex64": (_frame(a=(np.arange(N) * 1j).astype("complex64")), False),
    "mixed-type-objects": (
        _frame(a=pd.Series([1, "two", 3.0, None, b"5", (6,)], dtype=object)),
        True,
    ),
    "big-ints": (_frame(a=pd.Series([2**70, -(2**65), 0, 1, 2, 3], dtype=object)), True),
    "lists-of-custom-objects": (
        _frame(
            a=pd.Series(
                [[Thing(1)], [], [Thing(2), Thing(3)], None, [Thing(4)], [Thing(5)]], dtype=object
            )
        ),
        True,
    ),
    "sparse": (
        _frame(
            a=pd.arrays.SparseArray([0, 0, 1, 0, 2, 0]),
            b=pd.arrays.SparseArray([0.0, np.nan, 1.5, 0, 0, 0]),
        ),
        True,
    ),
    "decimals": (
        _frame(
            a=pd.Series(
                [
                    decimal.Decimal("1.10"),
                    decimal.Decimal("-2"),
                    None,
                    decimal.Decimal("3.5"),
                    decimal.Decimal("0"),
                    decimal.Decimal("9"),
                ],
                dtype=object,
            )
        ),
        True,
    ),
    "dates-as-objects": (
        _frame(a=pd.Series([datetime.date(2020, 1, i + 1) for i in range(N)], dtype=object)),
        True,
    ),
    "mixed-nulls-objects": (
        _frame(a=pd.Series(["a", None, np.nan, "b", "c", "d"], dtype=object)),
        True,
    ),
}


def _with_attrs(df):
    df = df.copy()
    df.attrs = {"source": "sensor-3", "units": {"a": "m/s"}, "version": (1, 2), "nan": float("nan")}
    return df


@pytest.mark.parametrize("name", list(FRAMES))
def test_frame_round_trip(name, tmp_path):
    df, needs_pickle = FRAMES[name]
    data = rc.dumps(df)
    (part,) = rc.inspect(data).parts
    assert part.codec == "pandas.DataFrame/arrow"
    assert part.pickle == needs_pickle, part.meta.get("pickled_columns")
    back = rc.loads(data, allow_pickle=needs_pickle)
    pd.testing.assert_frame_equal(back, df)
    if isinstance(df.index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        assert back.index.freq == df.index.freq
    rc.save(df, tmp_path / "b")
    pd.testing.assert_frame_equal(rc.load(tmp_path / "b", allow_pickle=needs_pickle), df)


def test_manifest_names_the_columns_that_needed_pickle():
    df = pd.DataFrame(
        {"ok": [1, 2], "mixed": pd.Series([1, "x"], dtype=object), "fine": ["a", "b"]}
    )
    (part,) = rc.inspect(rc.dumps(df)).parts
    assert part.pickle and part.meta["pickled_columns"] == ["mixed"]
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(rc.dumps(df), allow_pickle=False)


def test_attrs_and_flags_are_kept():
    df = _with_attrs(FRAMES["int64"][0])
    back = rc.loads(rc.dumps(df))
    assert back.attrs["units"] == {"a": "m/s"} and back.attrs["version"] == (1, 2)
    pd.testing.assert_frame_equal(back, df)
    strict = pd.DataFrame({"a": [1]}).set_flags(allows_duplicate_labels=False)
    assert rc.loads(rc.dumps(strict)).flags.allows_duplicate_labels is False


SERIES = {
    "named-float": pd.Series([1.0, np.nan], name="x"),
    "tuple-name": pd.Series([1, 2], name=("a", 1)),
    "int-name": pd.Series([1, 2], name=7),
    "categorical": pd.Series(pd.Categorical(["a", "b", None]), name="c"),
    "tz-index": pd.Series(
        [1, 2, 3], index=pd.date_range("2020", periods=3, freq="D", tz="US/Eastern")
    ),
    "str": pd.Series(["a", None], dtype="str"),
    "period": pd.Series(pd.period_range("2020", periods=3, freq="W")),
    "multiindex": pd.Series(
        range(4), index=pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a"), (2, "b")])
    ),
    "with-attrs": pd.Series([1], name="s").pipe(lambda s: s.__setattr__("attrs", {"k": 1}) or s),
}


@pytest.mark.parametrize("name", list(SERIES))
def test_series_round_trip(name):
    s = SERIES[name]
    data = rc.dumps({"s": s})
    assert [p.codec for p in rc.inspect(data).parts] == ["pandas.Series/arrow"]
    back = rc.loads(data, allow_pickle=False)["s"]
    pd.testing.assert_series_equal(back, s)
    assert back.attrs == s.attrs


INDEXES = {
    "range": pd.RangeIndex(0, 100, 3, name="r"),
    "int": pd.Index([3, 1, 2], name="i"),
    "str": pd.Index(["x", None, "z"]),
    "datetime-freq": pd.date_range("2020", periods=5, freq="15min", name="t"),
    "multi": pd.MultiIndex.from_arrays([[1, 2], ["a", "b"]], names=["n", "s"]),
    "categorical": pd.CategoricalIndex(["a", "b", "a"]),
    "interval": pd.interval_range(0.0, 1.0, periods=4, closed="neither"),
    "period": pd.period_range("2020-01-01", periods=3, freq="D"),
}


@pytest.mark.parametrize("name", list(INDEXES))
def test_index_round_trip(name):
    idx = INDEXES[name]
    back = rc.loads(rc.dumps(idx), allow_pickle=False)
    pd.testing.assert_index_equal(back, idx, exact=True)
    assert type(back) is type(idx)
    if isinstance(idx, pd.DatetimeIndex):
        assert back.freq == idx.freq


def test_numeric_columns_load_as_writable_views_without_a_copy():
    df = pd.DataFrame({f"c{i}": rng.random(1000) for i in range(4)})
    back = rc.loads(rc.dumps(df), allow_pickle=False)
    pd.testing.assert_frame_equal(back, df)
    back.iloc[0, 0] = -1.0  # writable
    assert back.iloc[0, 0] == -1.0


def test_frames_inside_structures_and_shared():
    df = FRAMES["datetime-tz"][0]
    value = {"train": df, "again": df, "parts": [FRAMES["period"][0]]}
    data = rc.dumps(value)
    assert len(rc.inspect(data).parts) == 2
    back = rc.loads(data, allow_pickle=False)
    assert back["train"] is back["again"]
    pd.testing.assert_frame_equal(back["parts"][0], FRAMES["period"][0])


def test_importing_pandas_codec_module_is_lazy():
    import subprocess
    import sys

    code = "import sys, remote_codecs as rc; rc.dumps([1.5]); print('pandas' in sys.modules, 'pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
