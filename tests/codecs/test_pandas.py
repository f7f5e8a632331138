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
from pandas_cases import BUILDERS, DATA, same, str_dtype

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
    for column in back.columns:  # views over the Arrow buffer the part was read into
        base = back[column].to_numpy()
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base, pa.Buffer)
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


# -- freq: every offset comes back exact, or is refused at encode time ---------------------------


def _every_offset():
    from pandas.tseries.holiday import USFederalHolidayCalendar

    o = pd.offsets
    offsets = [
        o.Day(2),
        o.Hour(5),
        o.Minute(15),
        o.Second(30),
        o.Milli(5),
        o.Micro(7),
        o.Nano(3),
        o.BusinessDay(2),
        o.BusinessDay(offset=pd.Timedelta("2h")),
        o.BusinessDay(offset=datetime.timedelta(hours=1)),
        o.BusinessHour(),
        o.BusinessHour(start="10:00", end="15:30"),
        o.BusinessHour(start=["09:00", "13:00"], end=["12:00", "17:00"]),
        o.CustomBusinessDay(holidays=["2024-01-03", "2024-01-10"], weekmask="Mon Tue Wed Thu"),
        o.CustomBusinessDay(calendar=USFederalHolidayCalendar()),
        o.CustomBusinessDay(n=-2, normalize=True, weekmask="Sun Mon"),
        o.CustomBusinessHour(start="10:00", end="15:00", holidays=["2024-01-02"]),
        o.CustomBusinessMonthEnd(holidays=["2024-01-31"]),
        o.CustomBusinessMonthBegin(weekmask="Tue Wed Thu"),
        o.MonthEnd(2),
        o.MonthBegin(),
        o.BusinessMonthEnd(),
        o.BusinessMonthBegin(3),
        o.SemiMonthEnd(day_of_month=20),
        o.SemiMonthBegin(day_of_month=5),
        o.Week(),
        o.Week(weekday=2),
        o.Week(2, weekday=6),
        o.WeekOfMonth(week=1, weekday=3),
        o.LastWeekOfMonth(weekday=4),
        o.QuarterEnd(startingMonth=2),
        o.QuarterBegin(startingMonth=1),
        o.BQuarterEnd(startingMonth=3),
        o.BQuarterBegin(startingMonth=2),
        o.YearEnd(month=6),
        o.YearBegin(month=3),
        o.BYearEnd(),
        o.BYearBegin(month=7),
        o.FY5253(weekday=1, startingMonth=3, variation="last"),
        o.FY5253(weekday=6, startingMonth=12, variation="nearest"),
        o.FY5253Quarter(weekday=4, startingMonth=9, qtr_with_extra_week=1, variation="last"),
        o.FY5253Quarter(weekday=0, startingMonth=1, qtr_with_extra_week=4, variation="nearest"),
        o.Easter(),
        o.Easter(2),
        pd.DateOffset(),
        pd.DateOffset(months=1, days=1),
        pd.DateOffset(2, weeks=1, hours=6),
        pd.DateOffset(weekday=2, hour=3),
        pd.DateOffset(normalize=True, years=1),
    ]
    for name in ("HalfYearEnd", "HalfYearBegin", "BHalfYearEnd", "BHalfYearBegin"):
        if hasattr(o, name):  # pandas 3
            offsets.append(getattr(o, name)(startingMonth=2))
    return offsets


EVERY_OFFSET = _every_offset()


@pytest.mark.parametrize("offset", EVERY_OFFSET, ids=[repr(o) for o in EVERY_OFFSET])
def test_every_freq_comes_back_exactly(offset):
    periods = 3 if isinstance(offset, (pd.offsets.FY5253, pd.offsets.FY5253Quarter)) else 8
    idx = pd.date_range("2024-01-01", periods=periods, freq=offset, name="t")
    s = pd.Series(np.arange(len(idx)), index=idx)
    if isinstance(offset, pd.offsets.BusinessDay) and offset.offset:
        # pandas' own ranges for these are not what the offset makes from their first
        # value (date_range(periods=8) makes 7): refused when written, naming the freq
        with pytest.raises(rc.SerializationError, match=r"index\.freq.*BusinessDay"):
            rc.dumps(s)
        return
    for obj in (idx, s, s.to_frame("v")):
        back = rc.loads(rc.dumps(obj), allow_pickle=False)
        same(back, obj)
        freq = back.freq if isinstance(back, pd.Index) else back.index.freq
        assert freq.kwds.keys() == offset.kwds.keys()
        assert all(np.all(freq.kwds[k] == v) for k, v in offset.kwds.items() if k != "calendar")
        # and it keeps working as a freq: the next dates are the same
        assert list(pd.date_range(idx[-1], periods=4, freq=freq)) == list(
            pd.date_range(idx[-1], periods=4, freq=offset)
        )


def test_the_holidays_of_a_business_day_freq_are_kept():
    cbd = pd.offsets.CustomBusinessDay(holidays=["2024-01-03"])
    df = pd.DataFrame({"v": range(5)}, index=pd.date_range("2024-01-01", periods=5, freq=cbd))
    back = rc.loads(rc.dumps(df), allow_pickle=False)
    assert back.index.freq.holidays == (np.datetime64("2024-01-03"),)
    assert back.index.freq == cbd
    # outside the range too: a holiday after the last date still counts
    later = pd.offsets.CustomBusinessDay(holidays=["2024-01-12"])
    s = pd.Series(range(3), index=pd.date_range("2024-01-08", periods=3, freq=later))
    assert rc.loads(rc.dumps(s)).index.freq.holidays == later.holidays


def test_timedelta_index_freq():
    idx = pd.timedelta_range("1D", periods=5, freq="90min", name="dt")
    same(rc.loads(rc.dumps(idx), allow_pickle=False), idx)


def test_a_freq_that_cannot_be_stored_is_refused_at_encode_time_naming_it():
    from dateutil.relativedelta import MO

    odd = pd.DateOffset(weekday=MO(2))  # a dateutil weekday object: no JSON form
    idx = pd.date_range("2024-01-01", periods=3, freq=odd)
    with pytest.raises(rc.SerializationError, match=r"index\.freq.*weekday"):
        rc.dumps(pd.Series(range(len(idx)), index=idx))
    with pytest.raises(rc.SerializationError, match=r"columns\.freq"):
        rc.dumps(pd.DataFrame([range(len(idx))], columns=idx))


def test_a_freq_of_an_offset_subclass_is_refused_at_encode_time():
    class Monthly(pd.DateOffset):
        pass

    idx = pd.DatetimeIndex(["2024-01-01", "2024-02-01"], freq=Monthly(months=1))
    s = pd.Series([1, 2], index=idx)
    with pytest.raises(rc.SerializationError, match=r"index\.freq.*Monthly"):
        rc.dumps(s)


# -- metadata from an attacker: refused, never resolved --------------------------------------------


def _with_meta(obj, edit):
    """``obj`` dumped, its part metadata edited, as a single-file bundle again."""
    import io
    import json
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(rc.dumps(obj)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("manifest.json"):
                manifest = json.loads(data)
                edit(manifest["parts"][0]["meta"])
                data = json.dumps(manifest).encode()
            z.writestr(info, data)
    return out.getvalue()


HOSTILE = {  # name -> (edit of the part's metadata, what the error says)
    "offset-class-outside-the-list": (
        lambda m: m["index"]["offset"].update({"class": "os.system"}),
        "not a pandas offset class",
    ),
    "offset-class-dunder": (
        lambda m: m["index"]["offset"].update({"class": "__class__"}),
        "not a pandas offset class",
    ),
    "offset-parameter-object": (
        lambda m: m["index"]["offset"]["params"].update({"holidays": {"$obj": 0}}),
        "offset parameter",
    ),
    "offset-parameter-name": (
        lambda m: m["index"]["offset"]["params"].update({"__init__": 1}),
        "parameter name",
    ),
    "ext-dtype-name": (
        lambda m: m["data"][0].update({"k": "ext", "dtype": "object"}),
        "extension dtype",
    ),
    "ext-dtype-time-zone-path": (
        lambda m: m["data"][0].update(
            {"k": "ext", "dtype": "datetime64[ns, dateutil//etc/passwd]"}
        ),
        "extension dtype",
    ),
    "numpy-object-dtype": (
        lambda m: m["data"][0].update({"k": "np", "dtype": "|O"}),
        "not allowed",
    ),
    "string-storage": (
        lambda m: m["data"][1].update({"storage": "../evil"}),
        "string dtype",
    ),
    "column-kind": (lambda m: m["data"][0].update({"k": "eval"}), "column kind"),
    "name-scalar-dtype": (
        lambda m: m.update({"attrs": {"x": {"$np": ["|O", 1]}}}),
        "scalar dtype",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_metadata_is_a_deserialization_error(name):
    cbd = pd.offsets.CustomBusinessDay(holidays=["2024-01-03"])
    df = pd.DataFrame(
        {"v": np.arange(4), "s": pd.array(list("abcd"), dtype="string[python]")},
        index=pd.date_range("2024-01-01", periods=4, freq=cbd),
    )
    edit, says = HOSTILE[name]
    with pytest.raises(rc.DeserializationError, match=says):
        rc.loads(_with_meta(df, edit), allow_pickle=False)


# -- across pandas versions ---------------------------------------------------------------------

ACROSS = sorted(
    (folder.name, path.stem)
    for folder in DATA.iterdir()
    if folder.name.startswith("pandas-")
    for path in folder.glob("*.rcb")
)


def _release(version):
    return tuple(int(x) for x in version.split(".")[:3])


@pytest.mark.parametrize(("folder", "name"), ACROSS)
def test_an_artifact_of_another_pandas_loads_exactly_or_is_refused_naming_both(folder, name):
    written = folder.removeprefix("pandas-").split("-")[0]
    if written == pd.__version__ and not folder.endswith("format1"):
        pytest.skip("written by this pandas")
    data = (DATA / folder / f"{name}.rcb").read_bytes()
    pickled = rc.inspect(data).needs_pickle  # format-1 files pickled some object columns
    newer = _release(written) > _release(pd.__version__)
    expected = BUILDERS[name]()
    # format 1 stored a freq as its freqstr: without holidays, weekmask or opening hours
    lost = folder.endswith("format1") and name in (
        "freq_business_days_holidays",
        "freq_business_hour",
        "freq_date_offset_kwargs",
        "freq_easter",
    )
    # Easter(method=...) is a pandas 3 parameter: refused by older pandas
    lost = lost or (name == "freq_easter" and _release(written) >= (3,) > _release(pd.__version__))
    if expected is None or lost:
        with pytest.raises(rc.DeserializationError) as info:
            rc.loads(data, allow_pickle=pickled, allow_version_mismatch=newer)
        if not folder.endswith("format1"):
            assert f"pandas {written}" in str(info.value)
            assert f"pandas {pd.__version__}" in str(info.value)
        return
    back = rc.loads(data, allow_pickle=pickled, allow_version_mismatch=newer)
    same(back, expected)


def test_pandas_2_2_pyarrow_numpy_strings_read_as_pandas_3_str():
    data = (DATA / "pandas-2.2.3-format1" / "str_column.rcb").read_bytes()
    assert rc.inspect(data).parts[0].meta["data"][0]["storage"] == "pyarrow_numpy"
    back = rc.loads(data, allow_pickle=False)
    assert back["s"].dtype == str_dtype()
    if _release(pd.__version__) >= (2, 3):
        assert back["s"].dtype.storage == "pyarrow" and back["s"].dtype.na_value is np.nan


def test_the_codecs_declare_their_version_policy():
    from remote_codecs.codecs.pandas import DataFrameCodec, IndexCodec, SeriesCodec

    for codec in (DataFrameCodec, SeriesCodec, IndexCodec):
        assert codec.version_policy == "no-newer"


def test_the_writer_pandas_version_is_recorded():
    (part,) = rc.inspect(rc.dumps(pd.Series([1]))).parts
    assert part.meta["pandas"] == pd.__version__


def _string_dtypes():
    dtypes = [pd.StringDtype("python"), pd.StringDtype("pyarrow"), str_dtype()]
    try:  # pandas >= 2.3: the na_value parameter
        dtypes.append(pd.StringDtype("python", na_value=np.nan))
    except TypeError:
        pass
    return dtypes


@pytest.mark.parametrize("dtype", _string_dtypes(), ids=repr)
def test_every_string_dtype_of_this_pandas_round_trips(dtype):
    s = pd.Series(["a", None, ""], dtype=dtype, name="s")
    df = s.to_frame()
    df.index = pd.Index(["x", "y", "z"], dtype=dtype)
    for obj in (s, df, df.index):
        back = rc.loads(rc.dumps(obj), allow_pickle=False)
        same(back, obj)
