"""pandas ``DataFrame``, ``Series`` and ``Index`` through Arrow IPC, exactly.

Layout of a part: ``.arrow``, an Arrow IPC file with one row-aligned field per data
column and per index array; ``.aux.arrow``, a one-row IPC file holding arrays of other
lengths (MultiIndex levels, categories, column labels), each wrapped in a list; and,
only where Arrow cannot represent a column exactly, ``.<n>.npy`` (complex and other raw
numpy dtypes, no pickle) or ``.objs.pkl`` (mixed-type objects, sparse columns, Python
ints beyond int64, custom objects: pickle). The structure (column labels, index types
and names, dtypes, ``attrs``, ``flags``, the ``freq`` of a Datetime/TimedeltaIndex) is in
the manifest's metadata; ``meta["pickled_columns"]`` lists the columns that needed pickle.

A ``freq`` is stored as the name of its class, checked against a fixed list of
``pandas.tseries.offsets`` classes, and its parameters as JSON (business-day holidays
and weekmask, ``DateOffset`` keywords, week anchors, fiscal-year rules ...); one whose
parameters cannot be stored so is refused at encode time, naming them. Decoding never
resolves a class that is not on that list.

Loads with ``allow_pickle=False`` unless a column needed pickle (then the manifest marks
the part as pickled and safe mode refuses it before anything is read).

Numeric columns are written straight from their buffers and read back as zero-copy,
writable views of one buffer per part, in unconsolidated blocks: no copy either way.

Versions (``version_policy = "no-newer"``): Arrow IPC reads the same everywhere, but the
dtypes it is rebuilt into are pandas', and they change (pandas 3's ``str`` dtype, the
``na_value`` of ``StringDtype``, new offset classes). A part written by an older pandas
reads exactly under a newer one (pandas 2.2's ``string[pyarrow_numpy]`` becomes
``StringDtype("pyarrow", na_value=nan)``, the same dtype under its pandas 3 name). A part
written by a newer pandas is refused by the loader unless it opts in
(``allow_version_mismatch``); then each dtype with an exact equivalent in the older
pandas is rebuilt as that one (``str`` becomes ``string[pyarrow_numpy]`` under pandas
2.1/2.2), and anything without one is a ``DeserializationError`` naming both versions.
Rebuilding is exact or refused by construction, so ``allow_version_mismatch="verify"``
needs no further check here.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from ..codec import Codec, PartReader, PartWriter, Prefixed
from ..errors import DeserializationError, SerializationError
from .arrow import read_ipc_buffer, write_ipc

FORMAT_VERSION = 2  # v2: freq as class + parameters, StringDtype in its canonical form

_NULL_KINDS = {"none": None, "nan": float("nan"), "na": pd.NA, "nat": pd.NaT}


# The Python types an object column may hold to go to Arrow, and the Arrow types they must
# become (anything else comes back as something else, and is pickled).
_OBJECT_TYPES: dict[type, Any] = {
    str: lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    bytes: lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
    bool: pa.types.is_boolean,
    int: lambda t: t == pa.int64(),
    float: lambda t: t == pa.float64(),
}


def _null_kind(value: Any) -> str | None:
    if value is None:
        return "none"
    if value is pd.NA:
        return "na"
    if value is pd.NaT:
        return "nat"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return None


def _values(obj: pd.Series | pd.Index) -> Any:
    """The values of a Series or Index without a copy: an ndarray or an ExtensionArray."""
    return obj.to_numpy() if isinstance(obj.dtype, np.dtype) else obj.array


_ARROW_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    ValueError,
    TypeError,
)


def _to_arrow(values: Any) -> pa.Array:
    """One Arrow array for a column's values. pandas' Arrow-backed arrays (pandas 3's
    ``str`` dtype, ``ArrowDtype``) hand over a ChunkedArray: its chunks are joined."""
    array = pa.array(values)
    if isinstance(array, pa.ChunkedArray):
        array = array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
    return array


# -- versions ------------------------------------------------------------------------------------


def _pandas_version() -> str:
    return str(pd.__version__)


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, micro) of a version string; unknown parts count as 0."""
    numbers = re.findall(r"\d+", version.split("+")[0])[:3]
    return tuple(int(n) for n in numbers) + (0,) * (3 - len(numbers))


class _Versions:
    """The writer's and the reader's pandas versions, for error messages."""

    def __init__(self, reader: PartReader, meta: dict[str, Any]) -> None:
        written = getattr(reader, "written_version", None) or meta.get("pandas")
        self.written = str(written)[:40] if written else None
        self.reading = _pandas_version()

    def differ(self) -> bool:
        return self.written is not None and self.written != self.reading

    def describe(self) -> str:
        writer = f"pandas {self.written}" if self.written else "an unrecorded pandas version"
        return f"written by {writer}, read by pandas {self.reading}"

    def refuse(self, what: str, hint: str = "") -> DeserializationError:
        hint = hint or (
            f"load it where pandas is {self.written}, or write it again under pandas {self.reading}"
            if self.written
            else "load it under the pandas version that wrote it"
        )
        return DeserializationError(f"{what} ({self.describe()}); {hint}")


@contextmanager
def _naming_versions(versions: _Versions) -> Iterator[None]:
    """Decoding errors under another pandas version than the writer's name both."""
    try:
        yield
    except DeserializationError:
        raise
    except Exception as exc:
        if not versions.differ():
            raise
        raise versions.refuse(
            f"this pandas part cannot be rebuilt: {type(exc).__name__}: {exc}"
        ) from exc


# -- dtypes named in the metadata ----------------------------------------------------------------

_HAS_NA_VALUE: bool | None = None


def _string_dtype_takes_na_value() -> bool:
    """pandas >= 2.3 has ``StringDtype(storage, na_value)``; older pandas only ``storage``."""
    global _HAS_NA_VALUE
    if _HAS_NA_VALUE is None:
        try:
            pd.StringDtype("python", na_value=np.nan)  # type: ignore[call-arg,unused-ignore]
            _HAS_NA_VALUE = True
        except TypeError:
            _HAS_NA_VALUE = False
    return _HAS_NA_VALUE


def _string_spec(dtype: Any) -> tuple[str, str]:
    """(storage, na) of a StringDtype in the form every pandas version reads: pandas
    2.1/2.2's ``pyarrow_numpy`` is ``("pyarrow", "nan")``, pandas 3's ``str``."""
    storage = str(dtype.storage)
    na = "na" if dtype.na_value is pd.NA else "nan"
    if storage == "pyarrow_numpy":
        storage, na = "pyarrow", "nan"
    return storage, na


def _string_dtype(storage: Any, na: Any, versions: _Versions) -> Any:
    if storage == "pyarrow_numpy":  # written by pandas 2.1/2.2
        storage, na = "pyarrow", "nan"
    if storage not in ("python", "pyarrow") or na not in ("na", "nan"):
        raise DeserializationError(
            f"unknown string dtype storage={storage!r} na={na!r} in the part's metadata"
        )
    if _string_dtype_takes_na_value():
        na_value = np.nan if na == "nan" else pd.NA
        return pd.StringDtype(storage, na_value=na_value)  # type: ignore[call-arg,unused-ignore]
    if na == "na":
        return pd.StringDtype(storage)
    if storage == "pyarrow" and _release(_pandas_version()) >= (2, 1):
        return pd.StringDtype("pyarrow_numpy")  # the same dtype under its pandas 2.1/2.2 name
    raise versions.refuse(
        f"a string column with storage {storage!r} and NaN as its missing value "
        "(pandas 3's str dtype) has no equivalent in this pandas",
        "load it under pandas >= 2.3, or convert the column to object or 'string' before saving it",
    )


# Extension dtypes rebuilt from their names: pandas' own, by name pattern, checked before
# the name is parsed. Anything else is pickled at encode time.
# A time zone by name (``Europe/Paris``, ``UTC+01:00``, ``dateutil/Asia/Tokyo``): no dots,
# no leading slash, so that no name reaches a file outside the zone databases.
_TZ = r"(?:UTC[+-]\d\d:\d\d|[A-Za-z][A-Za-z0-9_+-]{0,40}(?:/[A-Za-z0-9_+-]{1,40}){0,3})"
_TZ_NAME = re.compile(_TZ)
_DATETIME_TZ = rf"datetime64\[(?:s|ms|us|ns), {_TZ}\]"
_EXT_DTYPE = re.compile(
    r"(?:U?Int(?:8|16|32|64)|Float(?:32|64)|boolean"
    rf"|{_DATETIME_TZ}"
    r"|period\[[0-9A-Za-z-]{1,24}\]"
    rf"|interval\[(?:[a-z0-9]{{1,20}}|datetime64\[(?:s|ms|us|ns)\]|timedelta64\[(?:s|ms|us|ns)\]"
    rf"|{_DATETIME_TZ}), (?:left|right|both|neither)\])"
)


def _ext_dtype(name: Any) -> Any:
    if not isinstance(name, str) or not _EXT_DTYPE.fullmatch(name):
        raise DeserializationError(f"extension dtype {name!r} is not one this codec rebuilds")
    return pd.api.types.pandas_dtype(name)


# -- freq: offsets as class name + parameters ----------------------------------------------------

# Every offset class of pandas.tseries.offsets (some exist only in newer pandas). Decoding
# resolves no class that is not named here.
_OFFSET_CLASSES = frozenset(
    {
        "DateOffset",
        "Day",
        "Hour",
        "Minute",
        "Second",
        "Milli",
        "Micro",
        "Nano",
        "BusinessDay",
        "BusinessHour",
        "CustomBusinessDay",
        "CustomBusinessHour",
        "MonthEnd",
        "MonthBegin",
        "BusinessMonthEnd",
        "BusinessMonthBegin",
        "CustomBusinessMonthEnd",
        "CustomBusinessMonthBegin",
        "SemiMonthEnd",
        "SemiMonthBegin",
        "Week",
        "WeekOfMonth",
        "LastWeekOfMonth",
        "QuarterEnd",
        "QuarterBegin",
        "BQuarterEnd",
        "BQuarterBegin",
        "HalfYearEnd",
        "HalfYearBegin",
        "BHalfYearEnd",
        "BHalfYearBegin",
        "YearEnd",
        "YearBegin",
        "BYearEnd",
        "BYearBegin",
        "FY5253",
        "FY5253Quarter",
        "Easter",
    }
)
_CUSTOM_CALENDAR = frozenset(
    {
        "CustomBusinessDay",
        "CustomBusinessHour",
        "CustomBusinessMonthEnd",
        "CustomBusinessMonthBegin",
    }
)
# The keyword arguments of those classes (DateOffset's relativedelta keywords included).
_OFFSET_PARAMS = frozenset(
    {
        "weekday",
        "weekmask",
        "holidays",
        "calendar",
        "offset",
        "start",
        "end",
        "startingMonth",
        "variation",
        "qtr_with_extra_week",
        "day_of_month",
        "week",
        "month",
        "method",
        *("years", "months", "weeks", "days", "hours", "minutes", "seconds"),
        *("milliseconds", "microseconds", "nanoseconds"),
        *("year", "day", "hour", "minute", "second", "microsecond", "nanosecond"),
    }
)
_DT64_UNITS = frozenset({"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns"})


class _Unstorable(Exception):
    """An offset parameter that has no JSON form."""


def _param_to_json(value: Any) -> Any:
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, np.integer):
        return int(value)
    if type(value) is float and math.isfinite(value):
        return value
    if type(value) is tuple:
        return {"$tuple": [_param_to_json(v) for v in value]}
    if type(value) is list:
        return [_param_to_json(v) for v in value]
    if isinstance(value, np.datetime64):
        unit, count = np.datetime_data(value.dtype)
        if count != 1 or unit not in _DT64_UNITS or np.isnat(value):
            raise _Unstorable(value)
        return {"$datetime64": [int(value.astype(np.int64)), unit]}
    if isinstance(value, pd.Timedelta):
        return {"$Timedelta": [int(value.value), value.unit]}
    if type(value) is datetime.timedelta:
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if type(value) is datetime.time and value.tzinfo is None:
        return {"$time": value.isoformat()}
    raise _Unstorable(value)


def _param_from_json(value: Any) -> Any:
    if value is None or type(value) in (bool, int, str, float):
        return value
    if type(value) is list:
        return [_param_from_json(v) for v in value]
    if type(value) is dict and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$tuple" and type(inner) is list:
            return tuple(_param_from_json(v) for v in inner)
        pair = type(inner) is list and len(inner) == 2 and type(inner[0]) is int
        if tag == "$datetime64" and pair and inner[1] in _DT64_UNITS:
            return np.datetime64(inner[0], inner[1])
        if tag == "$Timedelta" and pair and inner[1] in ("s", "ms", "us", "ns"):
            return pd.Timedelta(inner[0], unit="ns").as_unit(inner[1])
        if tag == "$timedelta" and type(inner) is list and all(type(v) is int for v in inner):
            return datetime.timedelta(*inner)
        if tag == "$time" and type(inner) is str and len(inner) <= 15:
            return datetime.time.fromisoformat(inner)
    raise DeserializationError(f"offset parameter {value!r} is not one this codec reads")


def _offset_params(offset: Any) -> dict[str, Any]:
    """The keyword arguments that rebuild ``offset`` (besides n and normalize)."""
    kwds = dict(offset.kwds)
    if "calendar" in kwds and "holidays" in kwds and "weekmask" in kwds:
        del kwds["calendar"]  # rebuilt from holidays and weekmask; checked below
    return kwds


def _offset_to_json(offset: Any, where: str) -> dict[str, Any]:
    """A freq as JSON; refused (SerializationError naming the parameter) unless it
    comes back equal, of the same class and with the same freqstr."""
    name = type(offset).__name__
    if name not in _OFFSET_CLASSES or getattr(pd.offsets, name, None) is not type(offset):
        raise SerializationError(
            f"{where}: {type(offset).__module__}.{type(offset).__qualname__} is not a "
            "pandas.tseries.offsets class this codec stores; set the index's freq to a "
            "pandas offset (or None) before saving"
        )
    params: dict[str, Any] = {}
    for key, value in _offset_params(offset).items():
        try:
            params[key] = _param_to_json(value)
        except _Unstorable:
            raise SerializationError(
                f"{where}: the {name} offset's parameter {key}={value!r} cannot be stored "
                "exactly; set the index's freq to None (or to an offset without it) before "
                "saving"
            ) from None
    spec = {
        "class": name,
        "n": int(offset.n),
        "normalize": bool(offset.normalize),
        "params": params,
    }
    try:
        back = _offset_from_json(spec, None)
    except (DeserializationError, TypeError, ValueError) as exc:
        raise SerializationError(
            f"{where}: the {name} offset {offset!r} cannot be rebuilt from its parameters "
            f"({exc}); set the index's freq to None before saving"
        ) from None
    if type(back) is not type(offset) or back != offset or back.freqstr != offset.freqstr:
        differing = [
            key
            for key, value in _offset_params(offset).items()
            if not _equal(_offset_params(back).get(key), value)
        ] or ["freqstr"]
        raise SerializationError(
            f"{where}: the {name} offset {offset!r} does not come back the same from its "
            f"parameters (differs in {', '.join(differing)}); set the index's freq to None "
            "before saving"
        )
    return spec


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _offset_from_json(spec: Any, versions: _Versions | None) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), dict):
        raise DeserializationError(f"malformed freq {spec!r} in the part's metadata")
    name = spec.get("class")
    if name not in _OFFSET_CLASSES:
        raise DeserializationError(
            f"freq class {name!r} is not a pandas offset class this codec rebuilds"
        )
    cls = getattr(pd.offsets, name, None)
    if cls is None:
        what = f"the freq is a {name} offset, which this pandas does not have"
        if versions is None:
            raise DeserializationError(what)
        raise versions.refuse(what, f"load it under a pandas that has pandas.offsets.{name}")
    n, normalize = spec.get("n"), spec.get("normalize")
    if type(n) is not int or type(normalize) is not bool:
        raise DeserializationError(f"malformed freq {spec!r} in the part's metadata")
    params = {}
    for key, value in spec["params"].items():
        if key not in _OFFSET_PARAMS:
            raise DeserializationError(f"freq parameter name {key!r} is not allowed")
        params[key] = _param_from_json(value)
    return cls(n, normalize=normalize, **params)


# -- labels, names and attrs: numpy and pandas scalars as JSON --------------------------------

_SCALAR_TAGS = frozenset({"$np", "$Timestamp", "$Timedelta", "$null", "$Interval", "$Period"})
_CLOSED = ("left", "right", "both", "neither")
_SCALAR_KINDS = "biufUmM"


def _scalar_to_json(value: Any) -> dict[str, Any] | None:
    """JSON for a numpy scalar, Timestamp, Timedelta, NaT or NA (a label, a name, a value
    in ``attrs``), or None when it would not come back identical (then it is pickled)."""
    spec: dict[str, Any]
    if value is pd.NaT:
        spec = {"$null": "nat"}
    elif value is pd.NA:
        spec = {"$null": "na"}
    elif isinstance(value, np.generic) and value.dtype.kind in _SCALAR_KINDS:
        kind = value.dtype.kind
        if kind in "mM":
            plain: Any = int(value.view(np.int64))
        elif kind == "f":
            plain = repr(float(value))
        elif kind == "U":
            plain = str(value)
        else:
            plain = value.item()
        spec = {"$np": [value.dtype.str, plain]}
    elif type(value) is pd.Timestamp:
        spec = {
            "$Timestamp": [
                value.isoformat(),
                value.unit,
                None if value.tz is None else str(value.tz),
            ]
        }
    elif type(value) is pd.Timedelta:
        spec = {"$Timedelta": [int(value.value), value.unit]}
    elif type(value) is pd.Interval:
        ends = [
            _scalar_to_json(e) if not _json_number(e) else _number(e)
            for e in (value.left, value.right)
        ]
        if any(e is None for e in ends):
            return None
        spec = {"$Interval": [*ends, value.closed]}
    elif type(value) is pd.Period:
        spec = {"$Period": [str(value), value.freqstr]}
    else:
        return None
    try:
        back = _scalar_from_json(*next(iter(spec.items())))
    except (DeserializationError, ValueError, TypeError, OverflowError, KeyError):
        return None
    if type(back) is not type(value) or not _same_scalar(back, value):
        return None
    return spec


def _json_number(value: Any) -> bool:
    return type(value) in (int, float)


def _number(value: Any) -> Any:
    return value if type(value) is int or math.isfinite(value) else {"$float": repr(value)}


def _end_from_json(value: Any) -> Any:
    if type(value) in (int, float):
        return value
    if type(value) is dict and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$float" and inner in ("nan", "inf", "-inf"):
            return float(inner)
        if tag in _SCALAR_TAGS - {"$Interval"}:
            return _scalar_from_json(tag, inner)
    raise DeserializationError(f"malformed interval end {value!r} in the part's metadata")


def _same_scalar(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, np.generic) and a.dtype != b.dtype:
        return False
    if isinstance(a, pd.Timestamp) and (a.unit != b.unit or str(a.tz) != str(b.tz)):
        return False
    if isinstance(a, pd.Timedelta) and a.unit != b.unit:
        return False
    if isinstance(a, pd.Interval):
        return (
            a.closed == b.closed
            and type(a.left) is type(b.left)
            and _same_scalar(a.left, b.left)
            and _same_scalar(a.right, b.right)
        )
    if isinstance(a, pd.Period) and a.freqstr != b.freqstr:
        return False
    try:
        if bool(pd.isna(a)) and bool(pd.isna(b)):
            return True
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _scalar_from_json(tag: str, inner: Any) -> Any:
    if tag == "$null" and inner in ("nat", "na"):
        return pd.NaT if inner == "nat" else pd.NA
    if tag == "$np" and type(inner) is list and len(inner) == 2 and type(inner[0]) is str:
        dtype = np.dtype(inner[0])
        if dtype.kind not in _SCALAR_KINDS:
            raise DeserializationError(f"scalar dtype {inner[0]!r} is not allowed")
        if dtype.kind in "mM":
            return np.array([int(inner[1])], dtype=np.int64).view(dtype)[0]
        if dtype.kind == "f":
            return dtype.type(float(inner[1]))
        return dtype.type(inner[1])
    if tag == "$Timestamp" and type(inner) is list and len(inner) == 3:
        iso, unit, tz = inner
        stamp = pd.Timestamp(str(iso))
        if tz is not None:
            if not isinstance(tz, str) or not _TZ_NAME.fullmatch(tz):
                raise DeserializationError(f"time zone {tz!r} is not one this codec reads")
            stamp = stamp.tz_convert(tz)
        return stamp.as_unit(str(unit))
    if tag == "$Timedelta" and type(inner) is list and len(inner) == 2:
        return pd.Timedelta(int(inner[0]), unit="ns").as_unit(str(inner[1]))
    if tag == "$Interval" and type(inner) is list and len(inner) == 3 and inner[2] in _CLOSED:
        return pd.Interval(_end_from_json(inner[0]), _end_from_json(inner[1]), closed=inner[2])
    if tag == "$Period" and type(inner) is list and len(inner) == 2:
        if not all(type(v) is str and len(v) <= 64 for v in inner):
            raise DeserializationError(f"malformed period {inner!r} in the part's metadata")
        return pd.Period(inner[0], freq=inner[1])
    raise DeserializationError(f"malformed scalar {tag}: {inner!r} in the part's metadata")


class _Encoder:
    """Collects a frame's arrays into Arrow fields, raw files and pickled objects."""

    def __init__(self, writer: PartWriter, nrows: int) -> None:
        self.writer = writer
        self.nrows = nrows
        self.rows: dict[str, pa.Array] = {}
        self.aux: dict[str, pa.Array] = {}
        self.objects: list[Any] = []
        self.files = 0
        self.pickled_columns: list[Any] = []

    # -- plain values (names, attrs) --------------------------------------------------------

    def plain(self, value: Any) -> Any:
        """JSON for a label or attribute value; anything else is kept as a pickled object."""
        tp = type(value)
        if value is None or tp in (bool, int, str):
            return value
        if tp is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if tp is tuple:
            return {"$tuple": [self.plain(v) for v in value]}
        if tp is list:
            return [self.plain(v) for v in value]
        if tp is dict and all(type(k) is str and not k.startswith("$") for k in value):
            return {k: self.plain(v) for k, v in value.items()}
        scalar = _scalar_to_json(value)
        if scalar is not None:
            return scalar
        self.objects.append(value)
        return {"$obj": len(self.objects) - 1}

    # -- arrays -----------------------------------------------------------------------------

    def _field(self, array: pa.Array, aligned: bool) -> str:
        table = self.rows if aligned else self.aux
        name = f"{'r' if aligned else 'a'}{len(table)}"
        table[name] = array
        return name

    def _pickle(self, values: Any, label: Any = None) -> dict[str, Any]:
        if label is not None:
            self.pickled_columns.append(label)
        self.objects.append(values)
        return {"k": "pickle", "obj": len(self.objects) - 1}

    def array(
        self, values: Any, aligned: bool, label: Any = None, where: str = "values"
    ) -> dict[str, Any]:
        """Encode one column (a Series' or Index's values) and return its spec."""
        dtype = values.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cat = pd.Categorical(values)
            return {
                "k": "cat",
                "codes": self.array(cat.codes, aligned, where=where),
                "categories": self.index(
                    cat.categories, aligned=False, where=f"{where}.categories"
                ),
                "ordered": bool(cat.ordered),
            }
        if isinstance(dtype, pd.SparseDtype):
            return self._pickle(values, label)
        if isinstance(dtype, np.dtype):
            return self._numpy(np.asarray(values), aligned, label)
        return self._extension(values, aligned, label)

    def _numpy(self, values: np.ndarray, aligned: bool, label: Any) -> dict[str, Any]:
        kind = values.dtype.kind
        descr = values.dtype.str
        if kind in "biufmM" and values.dtype.byteorder in "=|<" and values.dtype != np.float16:
            return {"k": "np", "dtype": descr, "f": self._field(pa.array(values), aligned)}
        if kind == "O":
            return self._object(values, aligned, label)
        # complex, float16, big-endian, fixed-width bytes/str, void: a raw .npy file
        from .numpy import NDArrayCodec  # the same .npy writer

        self.files += 1
        suffix = f".{self.files}"
        meta = NDArrayCodec().encode(np.ascontiguousarray(values), Prefixed(self.writer, suffix))  # type: ignore[arg-type]
        return {"k": "npy", "suffix": suffix + ".npy", "meta": meta}

    def _object(self, values: np.ndarray, aligned: bool, label: Any) -> dict[str, Any]:
        """Object columns of one Python type (str, bytes, bool, int, float), with one kind
        of missing value, go to Arrow; anything else is pickled."""
        mask = pd.isna(values)
        kinds = {_null_kind(v) for v in values[mask]} if mask.any() else set()
        if None in kinds or len(kinds) > 1:
            return self._pickle(values, label)
        present = values[~mask] if kinds else values
        types = {type(v) for v in present}
        if len(types) > 1 or not types <= set(_OBJECT_TYPES):
            # mixed types, lists, dicts, dates, numpy scalars ... would not come back as they were
            return self._pickle(values, label)
        try:
            array = pa.array(values, from_pandas=True)
        except _ARROW_ERRORS:
            return self._pickle(values, label)
        expected = _OBJECT_TYPES[types.pop()] if types else pa.types.is_null
        if not expected(array.type):
            return self._pickle(values, label)
        spec: dict[str, Any] = {"k": "obj", "f": self._field(array, aligned)}
        if kinds:
            spec["null"] = kinds.pop()
        return spec

    def _extension(self, values: Any, aligned: bool, label: Any) -> dict[str, Any]:
        dtype = values.dtype
        if isinstance(dtype, (pd.StringDtype, pd.ArrowDtype)):
            try:
                array = _to_arrow(values)
            except _ARROW_ERRORS:
                return self._pickle(values, label)
            if isinstance(dtype, pd.ArrowDtype):
                return {"k": "arrow", "f": self._field(array, aligned)}
            storage, na = _string_spec(dtype)
            return {"k": "string", "storage": storage, "na": na, "f": self._field(array, aligned)}
        name = str(dtype)
        try:
            same = bool(_EXT_DTYPE.fullmatch(name)) and pd.api.types.pandas_dtype(name) == dtype
        except (TypeError, ValueError):
            same = False
        if not same or not hasattr(dtype, "__from_arrow__"):
            return self._pickle(values, label)
        try:
            array = _to_arrow(values)
        except _ARROW_ERRORS:
            return self._pickle(values, label)
        return {"k": "ext", "dtype": name, "f": self._field(array, aligned)}

    # -- indexes -------------------------------------------------------------------------------

    def index(self, index: pd.Index, aligned: bool, where: str = "index") -> dict[str, Any]:
        if type(index) is pd.RangeIndex:
            return {
                "t": "range",
                "start": index.start,
                "stop": index.stop,
                "step": index.step,
                "name": self.plain(index.name),
            }
        if isinstance(index, pd.MultiIndex):
            return {
                "t": "multi",
                "levels": [
                    self.index(level, aligned=False, where=f"{where}.levels[{i}]")
                    for i, level in enumerate(index.levels)
                ],
                "codes": [self.array(np.asarray(codes), aligned) for codes in index.codes],
                "names": [self.plain(n) for n in index.names],
            }
        spec: dict[str, Any] = {
            "t": "index",
            "values": self.array(_values(index), aligned, where=where),
            "name": self.plain(index.name),
        }
        freq = getattr(index, "freq", None)
        if freq is not None and isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
            spec["offset"] = offset = _offset_to_json(freq, f"{where}.freq")
            if not isinstance(freq, pd.offsets.Tick):
                try:  # what decoding will do: the values must be the rebuilt freq's range
                    _with_freq(index, _offset_from_json(offset, None))
                except ValueError as exc:
                    raise SerializationError(
                        f"{where}.freq: the index does not conform to its own freq {freq!r} "
                        f"({exc}); set its freq to None before saving"
                    ) from None
        return spec

    # -- writing --------------------------------------------------------------------------------

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        if self.rows:
            write_ipc(
                self.writer,
                ".arrow",
                pa.record_batch(list(self.rows.values()), names=list(self.rows)),
            )
        if self.aux:
            wrapped = [
                pa.ListArray.from_arrays(pa.array([0, len(a)], pa.int32()), a)
                if len(a) < 2**31
                else pa.LargeListArray.from_arrays(pa.array([0, len(a)], pa.int64()), a)
                for a in self.aux.values()
            ]
            write_ipc(self.writer, ".aux.arrow", pa.record_batch(wrapped, names=list(self.aux)))
        if self.objects:
            self.writer.pickle(".objs.pkl", self.objects)
        meta["pickled_columns"] = (
            [self.plain(c) for c in self.pickled_columns] if self.pickled_columns else []
        )
        return meta


# -- decoding ------------------------------------------------------------------------------------


class _Decoder:
    def __init__(self, reader: PartReader, meta: dict[str, Any], versions: _Versions) -> None:
        self.reader = reader
        self.versions = versions
        self.rows: pa.Table | None = None
        self.memory: pa.Buffer | None = None
        if meta.get("has_rows"):
            self.rows, self.memory = read_ipc_buffer(reader, ".arrow")
        self.aux = read_ipc_buffer(reader, ".aux.arrow")[0] if meta.get("has_aux") else None
        self.objects: list[Any] = reader.unpickle(".objs.pkl") if meta.get("has_objects") else []

    def plain(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.plain(v) for v in value]
        if isinstance(value, dict):
            if len(value) == 1:
                ((tag, inner),) = value.items()
                if tag == "$obj":
                    return self.objects[inner]
                if tag == "$tuple":
                    return tuple(self.plain(v) for v in inner)
                if tag == "$float":
                    return float(inner)
                if tag in _SCALAR_TAGS:
                    return _scalar_from_json(tag, inner)
            return {k: self.plain(v) for k, v in value.items()}
        return value

    def _arrow(self, field: str) -> pa.Array:
        if field.startswith("r"):
            assert self.rows is not None
            column = self.rows.column(field)
            return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        assert self.aux is not None
        return self.aux.column(field)[0].values

    def array(self, spec: dict[str, Any]) -> Any:
        kind = spec["k"]
        if kind == "np":
            dtype = np.dtype(spec["dtype"])
            if dtype.kind not in "biufmM":
                raise DeserializationError(f"numpy column dtype {spec['dtype']!r} is not allowed")
            return _numpy_view(self._arrow(spec["f"]), dtype, self.memory)
        if kind == "obj":
            return _objects(self._arrow(spec["f"]), _NULL_KINDS[spec.get("null", "none")])
        if kind == "ext":
            dtype = _ext_dtype(spec["dtype"])
            values = dtype.__from_arrow__(self._arrow(spec["f"]))
            return values if values.dtype == dtype else values.astype(dtype)
        if kind == "string":
            dtype = _string_dtype(spec["storage"], spec["na"], self.versions)
            return dtype.__from_arrow__(self._arrow(spec["f"]))
        if kind == "arrow":
            return pd.arrays.ArrowExtensionArray(self._arrow(spec["f"]))
        if kind == "cat":
            categories = self.index(spec["categories"])
            codes = self.array(spec["codes"])
            return pd.Categorical.from_codes(codes, categories=categories, ordered=spec["ordered"])
        if kind == "npy":
            from .numpy import NDArrayCodec

            prefix = spec["suffix"][: -len(".npy")]
            return NDArrayCodec().decode(Prefixed(self.reader, prefix), spec["meta"], 1)  # type: ignore[arg-type]
        if kind == "pickle":
            return self.objects[spec["obj"]]
        raise DeserializationError(f"unknown column kind {kind!r} in the part's metadata")

    def index(self, spec: dict[str, Any]) -> pd.Index:
        if spec["t"] == "range":
            return pd.RangeIndex(
                spec["start"], spec["stop"], spec["step"], name=self.plain(spec["name"])
            )
        if spec["t"] == "multi":
            return pd.MultiIndex(
                levels=[self.index(level) for level in spec["levels"]],
                codes=[self.array(c) for c in spec["codes"]],
                names=[self.plain(n) for n in spec["names"]],
                verify_integrity=True,  # codes within their levels
            )
        values = self.array(spec["values"])
        index = pd.Index(
            values, name=self.plain(spec["name"]), copy=False, dtype=getattr(values, "dtype", None)
        )
        if spec.get("offset") is not None:
            index = self._with_freq(index, _offset_from_json(spec["offset"], self.versions))
        elif spec.get("freq"):  # format v1: the freqstr
            index = self._with_freq(index, _v1_offset(spec["freq"], self.versions))
        return index

    def _with_freq(self, index: pd.Index, offset: Any) -> pd.Index:
        if not isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
            raise DeserializationError(f"a freq on a {type(index).__name__} in the part's metadata")
        try:
            return _with_freq(index, offset)
        except ValueError as exc:
            raise DeserializationError(
                f"the index's values do not conform to its stored freq {offset!r}: {exc}"
            ) from None


def _with_freq(index: pd.Index, offset: Any) -> pd.Index:
    """``index`` with ``offset`` as its freq: the range that ``offset`` generates from the
    first value, which must equal ``index`` (ValueError otherwise). Generating, rather
    than pandas' own check, accepts every index that pandas itself made with that freq
    (pandas' check refuses some, such as ``BusinessDay(offset=...)`` ranges)."""
    if len(index) == 0:
        cls = pd.DatetimeIndex if isinstance(index, pd.DatetimeIndex) else pd.TimedeltaIndex
        return cls(index, freq=offset, name=index.name)
    make = pd.date_range if isinstance(index, pd.DatetimeIndex) else pd.timedelta_range
    made = make(
        start=index[0],
        periods=len(index),
        freq=offset,
        unit=index.unit,  # type: ignore[attr-defined]
        name=index.name,
    )
    if made.dtype != index.dtype or not made.equals(index) or made.freq != offset:
        raise ValueError(f"the values are not the range that {offset!r} makes")
    return made


def _v1_offset(freqstr: Any, versions: _Versions) -> Any:
    """A freq written as its freqstr (format v1). A freqstr leaves out the holidays and
    weekmask of custom business calendars and the opening hours of business hours: those
    are refused rather than guessed."""
    if not isinstance(freqstr, str) or len(freqstr) > 64:
        raise DeserializationError(f"malformed freq {freqstr!r} in the part's metadata")
    offset = pd.tseries.frequencies.to_offset(freqstr)
    if type(offset).__name__ in _CUSTOM_CALENDAR | {"BusinessHour"}:
        raise DeserializationError(
            f"the index's freq {freqstr!r} ({type(offset).__name__}) was stored by an older "
            "remote-runtime (format v1) without its holidays, weekmask or hours, so it "
            "cannot be rebuilt exactly; write the value again with this version"
        )
    return offset


def _objects(array: pa.Array, null: Any) -> np.ndarray[Any, Any]:
    """An object column back from Arrow: Python str/bytes/bool/int/float, ``null`` where
    the values were missing."""
    kind = array.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        mask = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
        zero = False if pa.types.is_boolean(kind) else 0
        filled = array.fill_null(pa.scalar(zero, kind)) if mask is not None else array
        values: np.ndarray[Any, Any] = filled.to_numpy(zero_copy_only=False).astype(object)
        if mask is not None:
            values[mask] = null
        return values
    out = np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)
    if null is not None and array.null_count:
        out[array.is_null().to_numpy(zero_copy_only=False)] = null
    return out


def _numpy_view(
    array: pa.Array, dtype: np.dtype[Any], memory: pa.Buffer | None
) -> np.ndarray[Any, Any]:
    """A writable numpy view of a null-free fixed-width Arrow array read from ``memory``
    (the part's buffer): no copy. Anything else is converted (a copy)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if array.null_count == 0 and dtype.kind != "b" and memory is not None:
        data = array.buffers()[1]
        base = memory.address
        if (
            data is not None
            and base <= data.address
            and data.address + data.size <= base + memory.size
        ):
            offset = data.address - base + array.offset * dtype.itemsize
            return np.frombuffer(memory, dtype=dtype, count=len(array), offset=offset)
    return np.array(array.to_numpy(zero_copy_only=False), dtype=dtype)


# -- the codecs ----------------------------------------------------------------------------------


def _column(values: Any) -> Any:
    """A column as the DataFrame constructor must see it: object arrays stay object
    (pandas would otherwise infer its string dtype from them)."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        return pd.Series(values, dtype=object, copy=False)
    return values


def _finish(encoder: _Encoder, meta: dict[str, Any]) -> dict[str, Any]:
    meta["pandas"] = _pandas_version()
    meta["has_rows"] = bool(encoder.rows)
    meta["has_aux"] = bool(encoder.aux)
    meta["has_objects"] = bool(encoder.objects)
    return encoder.finish(meta)


def _attrs_and_flags(encoder: _Encoder, obj: Any) -> dict[str, Any]:
    return {
        "attrs": encoder.plain(dict(obj.attrs)) if obj.attrs else None,
        "allows_duplicate_labels": bool(obj.flags.allows_duplicate_labels),
    }


def _restore(obj: Any, dec: _Decoder, meta: dict[str, Any]) -> Any:
    """Put ``attrs`` and ``flags`` back on a decoded DataFrame or Series."""
    if meta.get("attrs"):
        obj.attrs = dec.plain(meta["attrs"])
    if not meta.get("allows_duplicate_labels", True):
        obj = obj.set_flags(allows_duplicate_labels=False)
    return obj


class _PandasCodec(Codec):
    version = FORMAT_VERSION
    library = "pandas"
    # Arrow IPC is stable, but the dtypes and offsets named in the metadata are pandas'
    # and change across versions: an older pandas is not trusted with a newer one's parts.
    version_policy: ClassVar[str] = "no-newer"
    verifies: ClassVar[bool] = True

    def decode(self, reader: PartReader, meta: dict[str, Any], version: int) -> Any:
        versions = _Versions(reader, meta)
        with _naming_versions(versions):
            return self._decode(_Decoder(reader, meta, versions), meta)

    def _decode(self, dec: _Decoder, meta: dict[str, Any]) -> Any:
        raise NotImplementedError


class DataFrameCodec(_PandasCodec):
    """``pandas.DataFrame`` through Arrow IPC; exact under ``assert_frame_equal``."""

    id = "pandas.DataFrame/arrow"
    types = ("pandas.DataFrame", "pandas.core.frame.DataFrame")

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        df: pd.DataFrame = obj
        enc = _Encoder(writer, len(df))
        meta: dict[str, Any] = {
            "nrows": len(df),
            "index": enc.index(df.index, aligned=True, where="index"),
            "columns": enc.index(df.columns, aligned=False, where="columns"),
            "data": [
                enc.array(
                    _values(df.iloc[:, i]),
                    aligned=True,
                    label=df.columns[i],
                    where=f"column {df.columns[i]!r}",
                )
                for i in range(df.shape[1])
            ],
            **_attrs_and_flags(enc, df),
        }
        return _finish(enc, meta)

    def _decode(self, dec: _Decoder, meta: dict[str, Any]) -> Any:
        index = dec.index(meta["index"])
        columns = dec.index(meta["columns"])
        arrays = [_column(dec.array(spec)) for spec in meta["data"]]
        if arrays:
            df = pd.DataFrame(dict(enumerate(arrays)), copy=False)
            df.index = index
        else:
            df = pd.DataFrame(index=index)
        df.columns = columns
        return _restore(df, dec, meta)


class SeriesCodec(_PandasCodec):
    """``pandas.Series`` through Arrow IPC; exact under ``assert_series_equal``."""

    id = "pandas.Series/arrow"
    types = ("pandas.Series", "pandas.core.series.Series")

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        s: pd.Series = obj
        enc = _Encoder(writer, len(s))
        meta: dict[str, Any] = {
            "index": enc.index(s.index, aligned=True, where="index"),
            "values": enc.array(_values(s), aligned=True, label=s.name),
            "name": enc.plain(s.name),
            **_attrs_and_flags(enc, s),
        }
        return _finish(enc, meta)

    def _decode(self, dec: _Decoder, meta: dict[str, Any]) -> Any:
        values = dec.array(meta["values"])
        s = pd.Series(
            values,
            index=dec.index(meta["index"]),
            name=dec.plain(meta["name"]),
            dtype=values.dtype,
            copy=False,
        )
        return _restore(s, dec, meta)


class IndexCodec(_PandasCodec):
    """``pandas.Index`` (every kind: Range, Multi, Categorical, Datetime with freq ...)."""

    id = "pandas.Index/arrow"
    types = ("pandas.Index", "pandas.core.indexes.base.Index")

    def encode(self, obj: Any, writer: PartWriter) -> dict[str, Any]:
        enc = _Encoder(writer, len(obj))
        return _finish(enc, {"index": enc.index(obj, aligned=True, where="index")})

    def _decode(self, dec: _Decoder, meta: dict[str, Any]) -> Any:
        return dec.index(meta["index"])
