"""The objects of the golden files, built the same way under any library version.

Every builder sets its dtypes explicitly, so that the same code builds the same object
under old and new versions (pandas 3 infers a string dtype where pandas 2 kept object,
for instance). ``GOLDEN`` maps a name to (builder, libraries it needs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

rng = np.random.RandomState(7)  # the legacy generator: stable across numpy versions
X = rng.rand(40, 4)
Y = (X[:, 0] + X[:, 1] > 1).astype(np.int64)


def plain() -> Any:
    return {
        "lr": 0.1,
        "tags": ("a", "b"),
        "ids": {1, 2, 3},
        "nan": float("nan"),
        7: b"raw",
        "nested": [None, True, -(2**70)],
    }


def arrays() -> Any:
    return {
        "f8": np.arange(12.0).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "big_endian": np.arange(4, dtype=">i8"),
        "complex": np.array([1 + 2j, -3j], dtype=np.complex64),
        "datetime": np.array(["2020-01-01T12:00", "NaT"], dtype="M8[ms]"),
        "structured": np.array([(1, 2.5, b"ab")], dtype=[("a", "<i4"), ("b", "<f8"), ("c", "S2")]),
        "zero_d": np.array(3.5),
        "scalar": np.float32(1.25),
        "unicode": np.array(["é", "日本"], dtype="<U2"),
    }


def frame() -> Any:
    import pandas as pd

    index = pd.MultiIndex.from_arrays(
        [pd.Index(["x", "x", "y", "y"], dtype=object), pd.Index([1, 2, 1, 2], dtype=np.int64)],
        names=["k", "n"],
    )
    df = pd.DataFrame(
        {
            "f": pd.Series([1.5, np.nan, 3.0, -0.0], dtype=np.float64).to_numpy(),
            "i": pd.array([1, None, 3, 4], dtype="Int64"),
            "b": pd.array([True, None, False, True], dtype="boolean"),
            "s": pd.Series(["a", None, "c", "d"], dtype=object).to_numpy(),
            "cat": pd.Categorical(
                ["lo", "hi", "lo", None],
                categories=pd.Index(["lo", "hi"], dtype=object),
                ordered=True,
            ),
            "t": pd.DatetimeIndex(
                ["2020-03-29 01:00", "2020-03-29 03:00", None, "2021-01-01"], tz="Europe/Paris"
            ).as_unit("ns"),
            "td": pd.to_timedelta(np.array([1, 2, 3, 4], dtype="m8[s]")).as_unit("ns"),
            "p": pd.PeriodIndex(["2020-01", "2020-02", None, "2021-12"], freq="M"),
            "iv": pd.arrays.IntervalArray.from_breaks(np.array([0, 1, 2, 3, 4], dtype=np.int64)),
        },
        index=index,
    )
    df.columns = pd.Index(list(df.columns), dtype=object)  # labels: object under every pandas
    df["s"] = pd.Series(
        ["a", None, "c", "d"], dtype=object, index=df.index
    )  # object, under every pandas
    df.attrs = {"source": "golden"}
    return df


def series_with_freq() -> Any:
    import pandas as pd

    idx = pd.date_range("2021-01-01", periods=5, freq="B", name="day").as_unit("ns")
    return pd.Series(np.arange(5, dtype=np.int64), index=idx, name="v")


def range_frame() -> Any:
    import pandas as pd

    df = pd.DataFrame({"a": np.arange(3, dtype=np.int64)}, index=pd.RangeIndex(10, 16, 2, name="r"))
    df.columns = pd.Index(["a"], dtype=object)
    return df


def arrow_table() -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "a": pa.array([1, None, 3], pa.int64()),
            "s": pa.array(["x", "y", None]),
            "l": pa.array([[1], [], None], pa.list_(pa.int32())),
        }
    )


def sparse() -> Any:
    import scipy.sparse as sp

    m = np.zeros((4, 3))
    m[0, 1], m[3, 2] = 1.5, -2.0
    return {"csr": sp.csr_matrix(m), "coo": sp.coo_matrix(m), "csc": sp.csc_matrix(m)}


def sklearn_pipeline() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)


def sklearn_forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0)
    ).fit(X, Y)


def xgb_classifier() -> Any:
    import xgboost as xgb

    return xgb.XGBClassifier(n_estimators=5, max_depth=3, learning_rate=0.3, random_state=0).fit(
        X, Y
    )


def xgb_booster() -> Any:
    import xgboost as xgb

    return xgb.train(
        {"objective": "reg:squarederror", "max_depth": 2, "seed": 0},
        xgb.DMatrix(X, label=X[:, 0]),
        4,
    )


def torch_state() -> Any:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    return net.state_dict()


def torch_tensors() -> Any:
    import torch

    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    return {
        "bf16": base.to(torch.bfloat16),
        "f16": base.half(),
        "i8": base.to(torch.int8),
        "bool": base > 2,
        "c64": torch.complex(base, base),
        "grad": base.clone().requires_grad_(True),
    }


# name -> (builder, libraries needed, what a model predicts with: None for values)
GOLDEN: dict[str, tuple[Callable[[], Any], tuple[str, ...]]] = {
    "plain": (plain, ()),
    "arrays": (arrays, ("numpy",)),
    "frame": (frame, ("pandas",)),
    "series_with_freq": (series_with_freq, ("pandas",)),
    "range_frame": (range_frame, ("pandas",)),
    "arrow_table": (arrow_table, ("pyarrow",)),
    "sparse": (sparse, ("scipy",)),
    "sklearn_pipeline": (sklearn_pipeline, ("sklearn",)),
    "sklearn_forest": (sklearn_forest, ("sklearn",)),
    "xgb_classifier": (xgb_classifier, ("xgboost",)),
    "xgb_booster": (xgb_booster, ("xgboost",)),
    "torch_state": (torch_state, ("torch",)),
    "torch_tensors": (torch_tensors, ("torch",)),
}


def predictions(obj: Any) -> np.ndarray | None:
    """What a model computes on X (stored beside it, compared after loading)."""
    if hasattr(obj, "predict_proba"):
        return np.asarray(obj.predict_proba(X), dtype=np.float64)
    if type(obj).__name__ == "Booster":
        import xgboost as xgb

        return np.asarray(obj.predict(xgb.DMatrix(X)), dtype=np.float64)
    return None
