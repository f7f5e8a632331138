"""pandas objects made the way users make them (read_csv, assign, merge, groupby, pivot,
resample, rolling, sklearn's bundled datasets ...), each required to round-trip exactly
through ``rc.dumps`` / ``rc.loads(allow_pickle=False)``, or, where a column holds Python
objects Arrow cannot represent, to need pickle and say which columns.

Every pandas case named in issue 11's "Why" is here by name."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandas_cases import same

import remote_codecs as rc

CSV = """id,name,city,when,amount,flag,score
1,ann,Paris,2024-01-01 09:00,10.5,True,3
2,bob,Berlin,2024-01-01 17:30,,False,
3,cy,,2024-01-02 08:15,7.25,True,5
4,dee,Paris,2024-01-03 12:00,1e3,,2
5,eve,Oslo,2024-01-05 23:59,-2.0,False,1
"""


def _sales() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 48
    return pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=n, freq="h"),
            "store": rng.choice(["north", "south", "east"], n),
            "item": rng.choice(["tea", "cake"], n),
            "qty": rng.integers(0, 9, n),
            "price": rng.random(n).round(2),
        }
    )


def _with_b() -> pd.DataFrame:
    df = pd.DataFrame({"a": [1, 2]})
    df["b"] = [3, 4]  # the column labels become pandas 3's str dtype
    return df


def _seed_example() -> Any:
    df = pd.DataFrame({"x": np.arange(5.0)})
    df["y"] = df["x"] * 2 + 1
    return ((df,), {"scale": 2.0})  # what @remote sends: (args, kwargs)


def _sk(name: str) -> Callable[[], pd.DataFrame]:
    def build() -> pd.DataFrame:
        datasets = pytest.importorskip("sklearn.datasets")
        return getattr(datasets, name)(as_frame=True).frame

    return build


def _resampled() -> pd.DataFrame:
    return _sales().set_index("day")[["qty", "price"]].resample("6h").sum()


def _business_days_with_holidays() -> pd.DataFrame:
    cbd = pd.offsets.CustomBusinessDay(holidays=["2024-01-03", "2024-01-10"])
    return pd.DataFrame({"v": range(8)}, index=pd.date_range("2024-01-01", periods=8, freq=cbd))


def _us_business_days() -> pd.Series:
    from pandas.tseries.holiday import USFederalHolidayCalendar

    cbd = pd.offsets.CustomBusinessDay(calendar=USFederalHolidayCalendar())
    return pd.Series(1.0, index=pd.date_range("2024-06-28", periods=10, freq=cbd), name="open")


def _monthly_date_offset() -> pd.DataFrame:
    idx = pd.date_range("2024-01-31", periods=5, freq=pd.DateOffset(months=1, days=1))
    return pd.DataFrame({"v": np.arange(5.0)}, index=idx)


# name -> (builder, columns that must be pickled: None = no pickle at all)
USER_MADE: dict[str, tuple[Callable[[], Any], list[Any] | None]] = {
    "assign-after-construction": (_with_b, None),
    "seed-example-args": (_seed_example, None),
    "read_csv": (lambda: pd.read_csv(io.StringIO(CSV)), None),
    "read_csv-parse-dates-index": (
        lambda: pd.read_csv(io.StringIO(CSV), parse_dates=["when"], index_col="id"),
        None,
    ),
    "read_csv-pyarrow-backend": (
        lambda: pd.read_csv(io.StringIO(CSV), dtype_backend="pyarrow"),
        None,
    ),
    "read_csv-numpy-nullable": (
        lambda: pd.read_csv(io.StringIO(CSV), dtype_backend="numpy_nullable"),
        None,
    ),
    "assign-method": (lambda: _sales().assign(total=lambda d: d.qty * d.price), None),
    "copy": (lambda: pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}).copy(), None),
    "merge": (
        lambda: _sales().merge(
            pd.DataFrame({"store": ["north", "south"], "region": ["N", "S"]}),
            on="store",
            how="left",
        ),
        None,
    ),
    "concat": (lambda: pd.concat([_sales().head(3), _sales().tail(2)]), None),
    "concat-keys": (lambda: pd.concat({"a": _sales().head(2), "b": _sales().tail(2)}), None),
    "groupby-mean": (lambda: _sales().groupby("store")[["qty", "price"]].mean(), None),
    "groupby-agg-multi": (
        lambda: _sales().groupby(["store", "item"]).agg({"qty": ["sum", "max"], "price": "mean"}),
        None,
    ),
    "groupby-named-agg": (
        lambda: (
            _sales().groupby("store", as_index=False).agg(n=("qty", "size"), top=("price", "max"))
        ),
        None,
    ),
    "groupby-size-series": (lambda: _sales().groupby(["store", "item"]).size(), None),
    "value_counts": (lambda: _sales()["store"].value_counts(), None),
    "pivot_table": (
        lambda: _sales().pivot_table(index="store", columns="item", values="qty", aggfunc="sum"),
        None,
    ),
    "pivot-dates-as-columns": (
        lambda: _sales().head(6).pivot(index="store", columns="day", values="qty"),
        None,
    ),
    "crosstab": (lambda: pd.crosstab(_sales()["store"], _sales()["item"]), None),
    "get_dummies": (lambda: pd.get_dummies(_sales()[["store", "qty"]]), None),
    "melt": (lambda: _sales().head(4).melt(id_vars=["day"], value_vars=["qty", "price"]), None),
    "stack": (lambda: _sales().head(4).set_index(["day", "store"])[["qty"]].stack(), None),
    "unstack": (lambda: _sales().groupby(["store", "item"])["qty"].sum().unstack(), None),
    "resample-sum": (_resampled, None),
    "resample-ohlc": (lambda: _sales().set_index("day")["price"].resample("D").ohlc(), None),
    "rolling-column": (
        lambda: _sales().assign(avg=lambda d: d["qty"].rolling(3).mean()),
        None,
    ),
    "set_index-reset_index": (
        lambda: _sales().set_index(["store", "day"]).sort_index().reset_index(level=0),
        None,
    ),
    "astype-category": (lambda: _sales().astype({"store": "category"}), None),
    "convert_dtypes": (lambda: pd.read_csv(io.StringIO(CSV)).convert_dtypes(), None),
    "ffill": (lambda: pd.read_csv(io.StringIO(CSV)).ffill(), None),
    "describe": (lambda: _sales()[["qty", "price"]].describe(), None),
    "describe-with-dates": (lambda: _sales().describe(), ["day"]),  # Timestamps, ints, NaN
    "sort-filter": (lambda: _sales().query("qty > 3").sort_values(["store", "price"]), None),
    "shift-pct_change": (
        lambda: _sales().set_index("day")["price"].pct_change().shift(2).to_frame(),
        None,
    ),
    "cut-intervals": (
        lambda: _sales().assign(band=lambda d: pd.cut(d.price, [0, 0.5, 1.0])),
        None,
    ),
    "str-split-lists": (
        lambda: pd.DataFrame({"tags": ["a,b", "c", "d,e,f"]}).assign(
            parts=lambda d: d.tags.str.split(",")
        ),
        ["parts"],
    ),
    "to_datetime-tz": (
        lambda: pd.DataFrame(
            {"t": pd.to_datetime(["2024-03-31 01:30", "2024-10-27 02:30"]).tz_localize("UTC")}
        ).assign(local=lambda d: d.t.dt.tz_convert("Europe/Paris")),
        None,
    ),
    "iris": (_sk("load_iris"), None),
    "wine": (_sk("load_wine"), None),
    "diabetes": (_sk("load_diabetes"), None),
    "breast_cancer": (_sk("load_breast_cancer"), None),
    "business-days-with-holidays": (_business_days_with_holidays, None),
    "us-federal-business-days": (_us_business_days, None),
    "date-offset-freq": (_monthly_date_offset, None),
    "week-anchored-freq": (
        lambda: pd.Series(range(4), index=pd.date_range("2024-01-03", periods=4, freq="W-WED")),
        None,
    ),
    "fiscal-quarter-freq": (
        lambda: pd.Series(
            range(4),
            index=pd.date_range(
                "2024-01-01",
                periods=4,
                freq=pd.offsets.FY5253Quarter(
                    weekday=4, startingMonth=9, qtr_with_extra_week=1, variation="last"
                ),
            ),
        ),
        None,
    ),
    "index-only": (lambda: _sales().set_index("day").index, None),
    "attrs": (lambda: _with_b().pipe(lambda d: setattr(d, "attrs", {"unit": "m"}) or d), None),
}


def _parts(data: bytes) -> list[Any]:
    return rc.inspect(data).parts


@pytest.mark.parametrize("name", list(USER_MADE))
def test_user_made_round_trips_exactly(name):
    build, pickled = USER_MADE[name]
    obj = build()
    data = rc.dumps(obj)
    if pickled is None:
        assert not any(p.pickle for p in _parts(data))
        back = rc.loads(data, allow_pickle=False)
    else:
        (part,) = _parts(data)
        assert part.pickle and part.meta["pickled_columns"] == pickled
        with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
            rc.loads(data, allow_pickle=False)
        back = rc.loads(data, allow_pickle=True)
    same(back, obj)


def test_business_day_holidays_come_back():
    df = _business_days_with_holidays()
    back = rc.loads(rc.dumps(df), allow_pickle=False)
    assert pd.Timestamp("2024-01-03") not in back.index  # the holiday is still skipped
    assert back.index.freq.holidays == df.index.freq.holidays
    # the freq works as before: the next business day after the 9th skips the 10th
    assert back.index[-1] + back.index.freq == df.index[-1] + df.index.freq


def test_a_frame_from_get_dummies_keeps_its_bool_columns():
    df = USER_MADE["get_dummies"][0]()
    back = rc.loads(rc.dumps(df), allow_pickle=False)
    assert list(back.dtypes.astype(str)) == list(df.dtypes.astype(str))
    assert back.columns.dtype == df.columns.dtype
