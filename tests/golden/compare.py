"""Exact comparison of a loaded golden object with the same object built today."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def assert_same(loaded: Any, expected: Any, where: str = "value") -> None:
    tp = type(expected)
    assert type(loaded) is tp, f"{where}: {type(loaded)} is not {tp}"
    module = tp.__module__.split(".")[0]
    if module == "pandas":
        import pandas as pd

        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(loaded, expected)
        elif isinstance(expected, pd.Series):
            pd.testing.assert_series_equal(loaded, expected)
        else:
            pd.testing.assert_index_equal(loaded, expected, exact=True)
        assert loaded.attrs == expected.attrs, where
        if isinstance(expected.index, pd.DatetimeIndex):
            assert loaded.index.freq == expected.index.freq, where
    elif module == "pyarrow":
        assert loaded.equals(expected), where
    elif module == "scipy":
        assert (
            loaded.dtype == expected.dtype
            and loaded.shape == expected.shape
            and (loaded != expected).nnz == 0
        ), where
    elif module == "torch":
        assert loaded.dtype == expected.dtype and loaded.shape == expected.shape, where
        assert loaded.requires_grad == expected.requires_grad, where
        import torch

        assert torch.equal(loaded.detach(), expected.detach()), where
    elif isinstance(expected, np.ndarray):
        assert loaded.dtype == expected.dtype and loaded.shape == expected.shape, where
        np.testing.assert_array_equal(loaded, expected)
    elif isinstance(expected, np.generic):
        assert loaded.dtype == expected.dtype and loaded == expected, where
    elif isinstance(expected, dict):
        assert list(loaded) == list(expected), where
        for k in expected:
            assert_same(loaded[k], expected[k], f"{where}[{k!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(loaded) == len(expected), where
        for i, (a, b) in enumerate(zip(loaded, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(loaded), where
    else:
        assert loaded == expected, where
