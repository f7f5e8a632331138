"""scipy sparse matrices and arrays, every format, without pickle."""

from __future__ import annotations

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

import remote_codecs as rc  # noqa: E402

FORMATS = ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_sparse_round_trip(fmt, kind):
    dense = np.zeros((6, 4), dtype=np.float32)
    dense[0, 1], dense[3, 2], dense[5, 3] = 1.5, -2.0, 7.0
    cls = getattr(sp, f"{fmt}_{kind}")
    m = cls(dense)
    data = rc.dumps({"m": m})
    assert [p.codec for p in rc.inspect(data).parts] == ["scipy.sparse/npy"]
    back = rc.loads(data, allow_pickle=False)["m"]
    assert type(back) is type(m) and back.dtype == m.dtype and back.shape == m.shape
    np.testing.assert_array_equal(back.toarray(), dense)


def test_large_random_csr():
    m = sp.random(2000, 300, density=0.01, format="csr", random_state=0, dtype=np.float64)
    back = rc.loads(rc.dumps(m), allow_pickle=False)
    assert (back != m).nnz == 0 and back.has_sorted_indices == m.has_sorted_indices
