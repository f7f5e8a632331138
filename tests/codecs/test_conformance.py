"""Every built-in codec passes the conformance kit that codec authors use."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from remote_codecs.codecs import BUILTIN_CODECS
from remote_codecs.testing import codec_checks


def _np_equal(a, b):
    return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)


def _samples():
    out = {
        "bytes/raw": (
            [b"x" * 70_000, bytearray(b"y" * 70_000)],
            lambda a, b: type(a) is type(b) and a == b,
            None,
        ),
        "numpy.ndarray/npy": (
            [np.arange(6.0).reshape(2, 3), np.array(["a", "b"])],
            _np_equal,
            "numpy",
        ),
        "numpy.generic/raw": (
            [np.float32(1.5), np.int8(-2)],
            lambda a, b: type(a) is type(b) and a == b,
            "numpy",
        ),
        "numpy.dtype/descr": (
            [np.dtype("<f8"), np.dtype([("a", "i4")])],
            lambda a, b: a == b,
            "numpy",
        ),
        "numpy.ma.MaskedArray/npy": (
            [np.ma.masked_array([1.0, 2.0], mask=[0, 1], fill_value=-1.0)],
            lambda a, b: (
                type(a) is type(b)
                and a.dtype == b.dtype
                and np.array_equal(a.data, b.data)
                and np.array_equal(a.mask, b.mask)
                and a.fill_value == b.fill_value
            ),
            "numpy",
        ),
    }
    try:
        import pandas as pd

        out["pandas.DataFrame/arrow"] = (
            [pd.DataFrame({"a": [1, 2], "b": pd.array([None, "x"], dtype="string")})],
            lambda a, b: a.equals(b) and a.dtypes.equals(b.dtypes),
            "pandas",
        )
        out["pandas.Series/arrow"] = (
            [pd.Series([1.5, None], name="s")],
            lambda a, b: a.equals(b) and a.name == b.name,
            "pandas",
        )
        out["pandas.Index/arrow"] = (
            [pd.Index([3, 1], name="i")],
            lambda a, b: a.equals(b) and a.name == b.name,
            "pandas",
        )
    except ImportError:
        pass
    try:
        import pyarrow as pa

        eq = lambda a, b: type(a) is type(b) and a.equals(b)  # noqa: E731
        out["pyarrow.Table/ipc"] = ([pa.table({"a": [1, 2]})], eq, "pyarrow")
        batch = pa.RecordBatch.from_pydict({"a": [1, 2]})
        out["pyarrow.RecordBatch/ipc"] = ([batch], eq, "pyarrow")
        out["pyarrow.Array/ipc"] = ([pa.array([1, None])], eq, "pyarrow")
        out["pyarrow.ChunkedArray/ipc"] = ([pa.chunked_array([[1], [2, 3]])], eq, "pyarrow")
    except ImportError:
        pass
    try:
        import torch

        out["torch.Tensor/raw"] = (
            [torch.arange(4.0), torch.ones(2, dtype=torch.bfloat16)],
            lambda a, b: a.dtype == b.dtype and torch.equal(a, b),
            "torch",
        )
    except ImportError:
        pass
    try:
        import xgboost as xgb

        X = np.random.default_rng(0).random((30, 2))
        booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=X[:, 0]), 2)
        model = xgb.XGBRegressor(n_estimators=2).fit(X, X[:, 0])
        out["xgboost.Booster/ubj"] = (
            [booster],
            lambda a, b: np.array_equal(a.predict(xgb.DMatrix(X)), b.predict(xgb.DMatrix(X))),
            "xgboost",
        )
        out["xgboost.XGBModel/ubj"] = (
            [model],
            lambda a, b: np.array_equal(a.predict(X), b.predict(X)),
            "xgboost",
        )
    except ImportError:
        pass
    try:
        from sklearn.linear_model import LinearRegression

        X = np.random.default_rng(0).random((30, 2))
        out["sklearn.BaseEstimator/skops"] = (
            [LinearRegression().fit(X, X[:, 0])],
            lambda a, b: np.array_equal(a.predict(X), b.predict(X)),
            "sklearn",
        )
    except ImportError:
        pass
    try:
        import scipy.sparse as sp

        out["scipy.sparse/npy"] = (
            [sp.csr_matrix(np.eye(3)), sp.coo_array(np.eye(2))],
            lambda a, b: type(a) is type(b) and (a != b).nnz == 0,
            "scipy",
        )
    except ImportError:
        pass
    return out


SAMPLES = _samples()
CODECS = {codec_id: target for codec_id, target, _ in BUILTIN_CODECS}
HEAVY_TF = {"tensorflow.Tensor/npy", "tensorflow.Variable/npy", "keras.Model/keras"}


def _library_not_installed(target: str) -> bool:
    """Whether a codec's module fails to import only because its library is not installed
    (torch, tensorflow ... on the oldest supported stack, ``make compat``)."""
    try:
        importlib.import_module(target.partition(":")[0])
    except ModuleNotFoundError as exc:
        return not (exc.name or "remote_codecs").startswith("remote_codecs")
    return False


def test_every_builtin_codec_has_samples_here():
    missing = sorted(
        c for c in set(CODECS) - set(SAMPLES) - HEAVY_TF if not _library_not_installed(CODECS[c])
    )
    assert not missing, f"add conformance samples for {missing}"


@pytest.mark.parametrize("check", codec_checks(), ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("codec_id", sorted(SAMPLES))
def test_builtin_codec_conformance(codec_id, check, tmp_path):
    module, _, name = CODECS[codec_id].partition(":")
    codec = getattr(importlib.import_module(module), name)
    samples, equal, library = SAMPLES[codec_id]
    check(
        codec,
        samples,
        equal=equal,
        tmp_path=tmp_path,
        registration_module="remote_codecs",
        library=library,
    )


@pytest.mark.parametrize("check", codec_checks(), ids=lambda c: c.__name__.removeprefix("check_"))
def test_tensorflow_codecs_conformance(check, tmp_path):
    tf = pytest.importorskip("tensorflow")
    from remote_codecs.codecs.tensorflow import TensorCodec, VariableCodec

    check(
        TensorCodec,
        [tf.constant([1.0, 2.0])],
        equal=lambda a, b: a.dtype == b.dtype and bool(tf.reduce_all(a == b)),
        tmp_path=tmp_path,
        library="tensorflow",
    )
    check(
        VariableCodec,
        [tf.Variable([1, 2], name="v")],
        equal=lambda a, b: a.dtype == b.dtype and bool(tf.reduce_all(a == b)),
        tmp_path=tmp_path,
        library="tensorflow",
    )
