"""Property tests: frames, series and indexes built by random sequences of the operations
people use (assign, drop, rename, merge, concat, groupby/agg, pivot, set_index/reset_index,
astype to category, nullable and pyarrow dtypes, sort, filter, resample, rolling, ffill,
convert_dtypes, read_csv with dtype_backend), starting from generated columns of every
dtype or from scikit-learn's bundled datasets. Each result must round-trip exactly
through ``rc.dumps`` / ``rc.loads(allow_pickle=False)``, need pickle only where it holds
Python objects (and then say which columns), or be refused when written, by name.

Bounded and reproducible: ``derandomize=True``, no example database, a few dozen examples.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas_cases import same

import remote_codecs as rc

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- columns of every dtype ----------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
_ints = st.integers(-(2**63), 2**63 - 1)
_small = st.integers(-1000, 1000)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _col(element: st.SearchStrategy[Any], make: Callable[[list[Any]], Any]) -> Any:
    return lambda n: st.lists(element, min_size=n, max_size=n).map(make)


COLUMNS: dict[str, Callable[[int], st.SearchStrategy[Any]]] = {
    "int64": _col(_ints, lambda v: np.array(v, dtype=np.int64)),
    "int32": _col(_small, lambda v: np.array(v, dtype=np.int32)),
    "uint8": _col(st.integers(0, 255), lambda v: np.array(v, dtype=np.uint8)),
    "float64": _col(_floats, lambda v: np.array(v, dtype=np.float64)),
    "float32": _col(_small, lambda v: np.array(v, dtype=np.float32) / 7),
    "bool": _col(st.booleans(), lambda v: np.array(v, dtype=bool)),
    "str": _col(_maybe(_text), lambda v: pd.array(v, dtype="str")),
    "string-python": _col(_maybe(_text), lambda v: pd.array(v, dtype="string[python]")),
    "string-pyarrow": _col(_maybe(_text), lambda v: pd.array(v, dtype="string[pyarrow]")),
    "object-str": _col(_text, lambda v: pd.Series(v, dtype=object).to_numpy()),
    "Int64": _col(_maybe(_ints), lambda v: pd.array(v, dtype="Int64")),
    "UInt16": _col(_maybe(st.integers(0, 2**16 - 1)), lambda v: pd.array(v, dtype="UInt16")),
    "Float64": _col(_maybe(_small), lambda v: pd.array(v, dtype="Float64")),
    "boolean": _col(_maybe(st.booleans()), lambda v: pd.array(v, dtype="boolean")),
    "category": _col(
        _maybe(st.sampled_from(["lo", "mid", "hi"])),
        lambda v: pd.Categorical(v, categories=["lo", "mid", "hi"], ordered=True),
    ),
    "datetime": _col(
        _maybe(st.integers(0, 2 * 10**9)),
        lambda v: pd.to_datetime(pd.Series(v, dtype="Int64"), unit="s").to_numpy(),
    ),
    "datetime-tz": _col(
        _maybe(st.integers(0, 2 * 10**9)),
        lambda v: (
            pd.to_datetime(pd.Series(v, dtype="Int64"), unit="s")
            .dt.tz_localize("UTC")
            .dt.tz_convert("Europe/Paris")
            .array
        ),
    ),
    "timedelta": _col(
        _maybe(st.integers(-(10**6), 10**6)),
        lambda v: pd.to_timedelta(pd.Series(v, dtype="Int64"), unit="ms").to_numpy(),
    ),
    "period": _col(
        _maybe(st.integers(0, 600)),
        lambda v: (
            pd.PeriodIndex(
                [None if x is None else pd.Period("2000-01", "M") + x for x in v], freq="M"
            ).array
        ),
    ),
    "arrow-int": _col(_maybe(_small), lambda v: pd.array(v, dtype=pd.ArrowDtype(pa.int64()))),
    "arrow-str": _col(_maybe(_text), lambda v: pd.array(v, dtype=pd.ArrowDtype(pa.string()))),
    "arrow-list": _col(
        _maybe(st.lists(_small, max_size=3)),
        lambda v: pd.array(v, dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
    ),
}

INDEXES: dict[str, Callable[[int], st.SearchStrategy[Any]]] = {
    "range": lambda n: st.just(pd.RangeIndex(n)),
    "range-step": lambda n: st.integers(-5, 5).map(lambda s: pd.RangeIndex(0, 3 * n, 3, name="r")),
    "int": lambda n: st.lists(_small, min_size=n, max_size=n).map(lambda v: pd.Index(v, name="i")),
    "str": lambda n: st.lists(_text, min_size=n, max_size=n).map(pd.Index),
    "dates-freq": lambda n: st.sampled_from(["D", "h", "B", "W-MON", "ME", "15min"]).map(
        lambda f: pd.date_range("2024-01-01", periods=n, freq=f, name="t")
    ),
    "dates-tz": lambda n: st.just(pd.date_range("2024-03-30", periods=n, freq="6h", tz="UTC")),
}


@st.composite
def generated_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 10))
    kinds = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=5))
    data = {f"{kind}_{i}": draw(COLUMNS[kind](n)) for i, kind in enumerate(kinds)}
    index = draw(INDEXES[draw(st.sampled_from(sorted(INDEXES)))](n))
    return pd.DataFrame(data, index=index)


@functools.cache
def _dataset(name: str) -> pd.DataFrame:
    datasets = pytest.importorskip("sklearn.datasets")
    return getattr(datasets, name)(as_frame=True).frame


DATASETS = ["load_iris", "load_wine", "load_diabetes", "load_breast_cancer"]


@st.composite
def dataset_frames(draw: st.DrawFn) -> pd.DataFrame:
    frame = _dataset(draw(st.sampled_from(DATASETS)))
    rows = draw(st.integers(1, len(frame)))
    columns = draw(st.integers(2, min(6, frame.shape[1])))
    return frame.iloc[:rows, -columns:]


# -- the operations people use -------------------------------------------------------------------


def _numeric(df: pd.DataFrame) -> list[Any]:
    return [c for c, d in zip(df.columns, df.dtypes) if pd.api.types.is_numeric_dtype(d)]


def _pick(draw: st.DrawFn, options: list[Any]) -> Any:
    if not options:
        raise LookupError("nothing to pick")
    return options[draw(st.integers(0, len(options) - 1))]


def op_assign(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    col = _pick(draw, _numeric(df))
    out = df.copy()
    out[draw(st.sampled_from(["y", "z", "total"]))] = out[col] * 2 + 1
    return out


def op_assign_method(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(const=draw(st.sampled_from([1, 1.5, "x", True])))


def op_drop(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[_pick(draw, list(df.columns))])


def op_rename(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    style = draw(st.sampled_from(["upper", "int", "prefix"]))
    if style == "int":
        return df.set_axis(range(df.shape[1]), axis=1)
    if style == "upper":
        return df.rename(columns=lambda c: str(c).upper())
    return df.add_prefix("p_")


def op_merge(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    key = _pick(draw, list(df.columns))
    other = df[[key]].drop_duplicates().assign(rank=lambda d: np.arange(len(d)))
    return df.merge(other, on=key, how=draw(st.sampled_from(["left", "inner", "outer"])))


def op_concat(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    how = draw(st.sampled_from(["rows", "keys", "columns"]))
    if how == "rows":
        return pd.concat([df, df.iloc[::-1]])
    if how == "keys":
        return pd.concat({"a": df, "b": df.head(2)})
    return pd.concat([df, df.add_suffix("_2")], axis=1)


def op_groupby(draw: st.DrawFn, df: pd.DataFrame) -> Any:
    key = _pick(draw, list(df.columns))
    agg = draw(st.sampled_from(["sum", "mean", "size", "first", "minmax", "count"]))
    grouped = df.groupby(key, dropna=draw(st.booleans()), observed=True)
    if agg == "size":
        return grouped.size()
    if agg == "minmax":
        return grouped.agg(["min", "max"])
    if agg in ("sum", "mean"):
        return getattr(grouped, agg)(numeric_only=True)
    return getattr(grouped, agg)()


def op_pivot(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    index, columns = (_pick(draw, list(df.columns)) for _ in range(2))
    values = _pick(draw, _numeric(df))
    return df.pivot_table(index=index, columns=columns, values=values, aggfunc="sum")


def op_set_index(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    keys = draw(st.lists(st.sampled_from(list(df.columns)), min_size=1, max_size=2, unique=True))
    return df.set_index(keys, drop=draw(st.booleans()))


def op_reset_index(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return df.reset_index(drop=draw(st.booleans()))


def op_astype(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    col = _pick(draw, list(df.columns))
    target = draw(
        st.sampled_from(
            ["category", "Int64", "Float64", "string", "str", "float32", "object", "int-arrow"]
        )
    )
    dtype = pd.ArrowDtype(pa.int64()) if target == "int-arrow" else target
    return df.astype({col: dtype})


def op_convert_dtypes(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return df.convert_dtypes(dtype_backend=draw(st.sampled_from(["numpy_nullable", "pyarrow"])))


def op_sort(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    if draw(st.booleans()):
        return df.sort_index(ascending=draw(st.booleans()))
    return df.sort_values(_pick(draw, list(df.columns)), na_position="first")


def op_filter(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    how = draw(st.sampled_from(["mask", "step", "head", "dropna"]))
    if how == "mask":
        col = _pick(draw, _numeric(df))
        return df[df[col] > df[col].median()]
    if how == "step":
        return df.iloc[:: draw(st.integers(1, 3))]
    if how == "head":
        return df.head(draw(st.integers(0, 5)))
    return df.dropna()


def op_resample(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(df.index, pd.DatetimeIndex):
        df = df.set_axis(pd.date_range("2024-01-01", periods=len(df), freq="h"), axis=0)
    rule = draw(st.sampled_from(["2h", "D", "W", "MS"]))
    how = draw(st.sampled_from(["sum", "mean", "last"]))
    r = df[_numeric(df)].resample(rule)
    return r.last() if how == "last" else getattr(r, how)()


def op_rolling(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    col = _pick(draw, _numeric(df))
    out = df.copy()
    out[f"{col}_roll"] = df[col].rolling(draw(st.integers(1, 3))).mean()
    return out


def op_ffill(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return df.ffill() if draw(st.booleans()) else df.bfill()


def op_csv(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    backend = draw(st.sampled_from(["numpy_nullable", "pyarrow", None]))
    text = df.to_csv(index=draw(st.booleans()))
    kwargs = {"dtype_backend": backend} if backend else {}
    return pd.read_csv(io.StringIO(text), **kwargs)


def op_dummies(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return pd.get_dummies(df, columns=[_pick(draw, list(df.columns))])


def op_melt(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return df.melt(id_vars=[_pick(draw, list(df.columns))])


def op_cut(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    col = _pick(draw, _numeric(df))
    return df.assign(band=pd.cut(df[col], draw(st.integers(1, 4))))


def op_unstack(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(df.index, pd.MultiIndex):
        df = df.set_index(list(df.columns[:2]))
    return df.unstack()


def op_transpose(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    return df.T


def op_attrs(draw: st.DrawFn, df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out.attrs = {"source": "test", "n": draw(_small), "tags": ["a", "b"]}
    return out


OPS: dict[str, Callable[[st.DrawFn, pd.DataFrame], Any]] = {
    name[3:]: fn for name, fn in globals().items() if name.startswith("op_")
}


@st.composite
def user_values(draw: st.DrawFn, base: st.SearchStrategy[pd.DataFrame]) -> tuple[Any, list[str]]:
    """A frame after a random sequence of operations, or one of its columns or its index;
    and the operations that made it (for the failure report)."""
    df = draw(base)
    done = []
    for name in draw(st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=5)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = OPS[name](draw, df)
        except (
            TypeError,
            ValueError,
            AttributeError,  # a label that names two columns
            KeyError,
            LookupError,
            NotImplementedError,
            pa.ArrowException,
        ):
            continue  # not an operation this frame supports
        if isinstance(out, pd.Series):
            out = out.to_frame()
        if out.shape[1] == 0:
            continue
        df = out
        done.append(name)
    final = draw(st.sampled_from(["frame", "frame", "frame", "series", "row", "index", "columns"]))
    if final == "series":
        return df.iloc[:, draw(st.integers(0, df.shape[1] - 1))], [*done, "series"]
    if final == "row" and len(df):  # a Series named by its row label
        try:
            return df.iloc[draw(st.integers(0, len(df) - 1))], [*done, "row"]
        except (TypeError, ValueError, pa.ArrowException):
            pass  # pandas cannot make one row of these columns
    if final in ("index", "columns"):
        return getattr(df, final), [*done, final]
    return df, done


# -- the property ---------------------------------------------------------------------------------


def _object_dtype(dtype: Any) -> bool:
    if isinstance(dtype, pd.CategoricalDtype):
        return _object_dtype(dtype.categories.dtype)
    return dtype == np.dtype(object)


def _holds_objects(obj: Any) -> bool:
    """Whether any array of ``obj`` (columns, index levels, column labels) holds Python
    objects: the only reason a part may need pickle."""
    if isinstance(obj, pd.DataFrame):
        return (
            any(_object_dtype(d) for d in obj.dtypes)
            or _holds_objects(obj.index)
            or _holds_objects(obj.columns)
        )
    if isinstance(obj, pd.Series):
        return _object_dtype(obj.dtype) or _holds_objects(obj.index)
    if isinstance(obj, pd.MultiIndex):
        return any(_holds_objects(level) for level in obj.levels)
    return _object_dtype(obj.dtype)


def check_round_trip(value: Any, ops: list[str]) -> None:
    try:
        data = rc.dumps(value)
    except rc.SerializationError as exc:
        # refused when written: only by name, and only for a freq it cannot keep
        assert "freq" in str(exc), (ops, exc)
        return
    (part,) = rc.inspect(data).parts
    if part.pickle:
        assert _holds_objects(value), (ops, part.meta)
        with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
            rc.loads(data, allow_pickle=False)
        back = rc.loads(data, allow_pickle=True)
    else:
        assert part.meta["pickled_columns"] == []
        back = rc.loads(data, allow_pickle=False)
    same(back, value)


@SETTINGS
@given(user_values(generated_frames()))
def test_generated_frames_after_user_operations_round_trip_exactly(made):
    check_round_trip(*made)


@pytest.fixture(scope="module")
def datasets_loaded() -> None:
    """Load the datasets once, outside the strategies."""
    for name in DATASETS:
        _dataset(name)


@SETTINGS
@given(user_values(dataset_frames()))
def test_sklearn_datasets_after_user_operations_round_trip_exactly(datasets_loaded, made):
    check_round_trip(*made)


@pytest.mark.parametrize("name", DATASETS)
def test_sklearn_datasets_round_trip_exactly(name):
    frame = _dataset(name)
    back = rc.loads(rc.dumps(frame), allow_pickle=False)
    same(back, frame)
    bunch = pytest.importorskip("sklearn.datasets")
    loaded = getattr(bunch, name)(as_frame=True)
    X, y = rc.loads(rc.dumps((loaded.data, loaded.target)), allow_pickle=False)
    same(X, loaded.data)
    same(y, loaded.target)


@SETTINGS
@given(generated_frames())
def test_generated_frames_round_trip_exactly(df):
    check_round_trip(df, [])
