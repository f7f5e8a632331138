"""What the pandas codec tests share: ``same()``, exact equality of pandas objects; and
pandas objects built the same way under pandas 2.1-2.2 and 3.x, for artifacts written
under one version and read under the other (``tests/codecs/data/pandas-<version>/``).

A builder returns ``None`` where the object has no equivalent in the running pandas (a
dtype or offset it lacks): reading that artifact there must be refused, naming both
versions. Write this version's files with::

    PYTHONPATH=src python tests/codecs/pandas_cases.py
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"


def same(a: Any, b: Any) -> None:
    """Exact equality: values, dtypes, index types and freq, flags and attrs."""
    assert type(a) is type(b)
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(
            a,
            b,
            check_exact=True,
            check_freq=True,
            check_flags=True,
            check_index_type=True,
            check_column_type=True,
        )
        assert a.attrs == b.attrs
        _same_freq(a.index, b.index)
        _same_freq(a.columns, b.columns)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(
            a,
            b,
            check_exact=True,
            check_freq=True,
            check_flags=True,
            check_index_type=True,
            check_names=False,  # compared below: pandas 2 compares (x, nan) names with ==
        )
        same_label(a.name, b.name)
        assert a.index.names == b.index.names
        assert a.attrs == b.attrs
        _same_freq(a.index, b.index)
    elif isinstance(a, pd.Index):
        pd.testing.assert_index_equal(a, b, exact=True, check_exact=True)
        _same_freq(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k])
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def same_label(a: Any, b: Any) -> None:
    """The same label: same type, equal, NaN where NaN, element by element in tuples."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same_label(x, y)
    elif not (a is b or (_isna(a) and _isna(b))):
        assert a == b, (a, b)
        if isinstance(a, pd.Timestamp):
            assert a.unit == b.unit and str(a.tz) == str(b.tz)


def _isna(x: Any) -> bool:
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _same_freq(a: pd.Index, b: pd.Index) -> None:
    freq = getattr(a, "freq", None)
    assert freq == getattr(b, "freq", None)
    if freq is not None:
        assert type(freq) is type(b.freq) and freq.freqstr == b.freq.freqstr


def _has_na_value() -> bool:
    try:
        pd.StringDtype("python", na_value=np.nan)
    except TypeError:
        return False
    return True


def str_dtype() -> Any:
    """pandas 3's ``str`` (Arrow storage, NaN missing); ``string[pyarrow_numpy]`` in 2.1-2.2."""
    if _has_na_value():
        return pd.StringDtype("pyarrow", na_value=np.nan)
    return pd.StringDtype("pyarrow_numpy")


def str_column() -> Any:
    df = pd.DataFrame({"s": pd.Series(["a", None, "ç", ""], dtype=str_dtype())})
    df.columns = pd.Index(["s"], dtype=object)
    return df


def str_labels() -> Any:
    df = pd.DataFrame({"a": np.arange(3, dtype=np.int64), "b": np.ones(3)})
    df.columns = pd.Index(["a", "b"], dtype=str_dtype())
    df.index = pd.Index(["x", "y", "z"], dtype=str_dtype(), name="key")
    return df


def string_na() -> Any:
    return pd.DataFrame(
        {
            "py": pd.array(["a", None, "c"], dtype=pd.StringDtype("python")),
            "pa": pd.array(["a", None, "c"], dtype=pd.StringDtype("pyarrow")),
        },
        columns=pd.Index(["py", "pa"], dtype=object),
    )


def python_nan_strings() -> Any:
    """pandas 3's ``str`` without pyarrow: no equivalent before pandas 2.3."""
    if not _has_na_value():
        return None
    return pd.Series(["a", None], dtype=pd.StringDtype("python", na_value=np.nan), name="s")


def typed_frame() -> Any:
    df = pd.DataFrame(
        {
            "i": pd.array([1, None, 3], dtype="Int64"),
            "f": np.array([0.5, np.nan, -0.0]),
            "b": pd.array([True, None, False], dtype="boolean"),
            "c": pd.Categorical(
                ["lo", None, "hi"], categories=pd.Index(["lo", "hi"], dtype=object)
            ),
            "t": pd.DatetimeIndex(["2024-03-31 01:30", None, "2024-10-27"], tz="UTC").as_unit("ns"),
            "p": pd.PeriodIndex(["2024-01", None, "2024-03"], freq="M"),
            "iv": pd.arrays.IntervalArray.from_breaks(np.array([0, 1, 2, 3], dtype=np.int64)),
            "o": pd.Series([True, np.nan, False], dtype=object).to_numpy(),
        }
    )
    df.columns = pd.Index(list(df.columns), dtype=object)
    df.attrs = {"unit": "m"}
    return df


def _freq_index(freq: Any, start: str = "2024-01-01", periods: int = 6) -> Any:
    idx = pd.date_range(start, periods=periods, freq=freq, name="t").as_unit("ns")
    return pd.Series(np.arange(periods, dtype=np.int64), index=idx, name="v")


FREQS: dict[str, Callable[[], Any]] = {
    "business_days_holidays": lambda: pd.offsets.CustomBusinessDay(
        holidays=["2024-01-03", "2024-01-10"], weekmask="Mon Tue Wed Thu"
    ),
    "date_offset_kwargs": lambda: pd.DateOffset(months=1, days=1),
    "week_wednesday": lambda: pd.offsets.Week(weekday=2),
    "week_of_month": lambda: pd.offsets.WeekOfMonth(week=1, weekday=3),
    "fiscal_quarter": lambda: pd.offsets.FY5253Quarter(
        weekday=4, startingMonth=9, qtr_with_extra_week=1, variation="last"
    ),
    "business_hour": lambda: pd.offsets.BusinessHour(start="10:00", end="15:30"),
    "month_end": lambda: pd.offsets.MonthEnd(2),
    "quarter_end_feb": lambda: pd.offsets.QuarterEnd(startingMonth=2),
    "easter": lambda: pd.offsets.Easter(),
    "hours": lambda: pd.offsets.Hour(3),
}


def half_year() -> Any:
    """pandas 3's HalfYearBegin offset: none before it."""
    if not hasattr(pd.offsets, "HalfYearBegin"):
        return None
    return _freq_index(pd.offsets.HalfYearBegin(startingMonth=2))


BUILDERS: dict[str, Callable[[], Any]] = {
    "str_column": str_column,
    "str_labels": str_labels,
    "string_na": string_na,
    "python_nan_strings": python_nan_strings,
    "typed_frame": typed_frame,
    "half_year": half_year,
    **{f"freq_{name}": (lambda make=make: _freq_index(make())) for name, make in FREQS.items()},
    "timedelta_freq": lambda: pd.Series(
        np.arange(4, dtype=np.int64),
        index=pd.timedelta_range("1D", periods=4, freq="90min").as_unit("ns"),
    ),
}


def write(folder: Path) -> None:
    import remote_codecs as rc

    folder.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        obj = build()
        if obj is not None:
            (folder / f"{name}.rcb").write_bytes(rc.dumps(obj))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / f"pandas-{pd.__version__}")
