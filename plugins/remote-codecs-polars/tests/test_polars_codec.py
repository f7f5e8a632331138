"""The polars codecs pass the conformance kit, keep dtypes, and refuse LazyFrame."""

from __future__ import annotations

import polars as pl
import pytest
from remote_codecs_polars.codec import DataFrameCodec, SeriesCodec

import remote_codecs as rc
from remote_codecs.testing import codec_checks

FRAMES = [
    pl.DataFrame({"a": [1, None, 3], "b": ["x", "y", None]}),
    pl.DataFrame(
        {
            "cat": pl.Series(["u", "v", "u"], dtype=pl.Categorical),
            "enum": pl.Series(["a", "c", "a"], dtype=pl.Enum(["a", "b", "c"])),
            "dec": pl.Series(["1.50", "2.25", None], dtype=pl.Decimal(10, 2)),
            "list": [[1], [], None],
            "struct": [{"x": 1}, {"x": 2}, None],
            "when": pl.datetime_range(
                pl.datetime(2020, 1, 1), pl.datetime(2020, 1, 3), "1d", time_zone="UTC", eager=True
            ),
        }
    ),
    pl.DataFrame(),
    pl.DataFrame(
        {
            "i128": pl.Series([1, -(2**126), None], dtype=pl.Int128),
            "nested": pl.Series([[2**100], [], None], dtype=pl.List(pl.Int128)),
            "s": ["x", None, "z"],
        }
    ),
]
SERIES = [
    pl.Series("n", [1.5, None]),
    pl.Series("s", ["a", "b"], dtype=pl.Categorical),
    pl.Series("wide", [2**120, None, -1], dtype=pl.Int128),
]


def frame_equal(a, b):
    return type(a) is type(b) and a.schema == b.schema and a.equals(b)


def series_equal(a, b):
    return type(a) is type(b) and a.name == b.name and a.dtype == b.dtype and a.equals(b)


@pytest.mark.parametrize("check", codec_checks(), ids=lambda c: c.__name__.removeprefix("check_"))
def test_dataframe_codec_conformance(check, tmp_path):
    check(
        DataFrameCodec,
        FRAMES,
        equal=frame_equal,
        tmp_path=tmp_path,
        registration_module="remote_codecs_polars",
        library="polars",
    )


@pytest.mark.parametrize("check", codec_checks(), ids=lambda c: c.__name__.removeprefix("check_"))
def test_series_codec_conformance(check, tmp_path):
    check(
        SeriesCodec,
        SERIES,
        equal=series_equal,
        tmp_path=tmp_path,
        registration_module="remote_codecs_polars",
        library="polars",
    )


def test_installed_plugin_is_found_through_its_entry_point():
    data = rc.dumps({"df": FRAMES[1]})
    (part,) = rc.inspect(data).parts
    assert part.codec == "polars.DataFrame/arrow" and part.provider == "remote-codecs-polars"
    assert frame_equal(rc.loads(data, allow_pickle=False)["df"], FRAMES[1])


def test_lazyframe_is_refused_with_a_hint():
    with pytest.raises(rc.SerializationError, match=r"value\['q'\].*LazyFrame.*collect\(\)"):
        rc.dumps({"q": FRAMES[0].lazy()})


def test_object_columns_are_refused_by_name():
    df = pl.DataFrame({"ok": [1, 2], "o": pl.Series([object(), object()], dtype=pl.Object)})
    with pytest.raises(rc.SerializationError, match=r"value\['t'\].*Object column\(s\) \['o'\]"):
        rc.dumps({"t": df})


def test_int128_columns_round_trip_exactly():
    df = pl.DataFrame(
        {
            "a": pl.Series([2**127 - 1, -(2**127), 0, None], dtype=pl.Int128),
            "st": pl.Series([{"v": 2**90}, None, {"v": -5}, {"v": None}]).cast(
                pl.Struct({"v": pl.Int128})
            ),
            "b": [1.5, None, 3.0, 4.0],
        }
    )
    back = rc.loads(rc.dumps({"df": df}), allow_pickle=False)["df"]
    assert frame_equal(back, df)
