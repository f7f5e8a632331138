"""dask collections are refused with the hint users need."""

from __future__ import annotations

import pytest

dask = pytest.importorskip("dask")

import remote_codecs as rc  # noqa: E402


def _collections():
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
    import pandas as pd

    return {
        "array": da.ones(10),
        "dataframe": dd.from_pandas(pd.DataFrame({"a": range(4)}), npartitions=2),
        "bag": db.from_sequence([1, 2, 3]),
        "delayed": dask.delayed(sum)([1, 2]),
    }


@pytest.mark.parametrize("name", ["array", "dataframe", "bag", "delayed"])
def test_dask_collections_are_refused(name):
    obj = _collections()[name]
    with pytest.raises(
        rc.SerializationError,
        match=r"value\['inputs'\]\[0\].*read it inside the function.*compute\(\)d",
    ):
        rc.dumps({"inputs": [obj]})
