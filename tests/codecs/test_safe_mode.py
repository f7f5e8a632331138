"""Safe mode across every typed codec: each loads with allow_pickle=False (exceptions are
documented in the codec's docstring), and a pickle planted in any part file is never
executed, whether or not the manifest is re-hashed to match."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pytest

import remote_codecs as rc


class Planted:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _samples():
    out = {"numpy": lambda: np.arange(10.0), "bytes": lambda: b"z" * 100_000}

    def pandas():
        import pandas as pd

        return pd.DataFrame({"a": [1, 2], "b": ["x", None], "c": pd.Categorical(["u", "v"])})

    def arrow():
        import pyarrow as pa

        return pa.table({"a": [1, 2]})

    def torch_state():
        import torch

        return torch.nn.Linear(2, 2).state_dict()

    def xgb_model():
        import xgboost as xgb

        X = np.random.default_rng(0).random((20, 2))
        return xgb.XGBRegressor(n_estimators=2).fit(X, X[:, 0])

    def sk_model():
        from sklearn.linear_model import LinearRegression

        X = np.random.default_rng(0).random((20, 2))
        return LinearRegression().fit(X, X[:, 0])

    def sparse():
        import scipy.sparse as sp

        return sp.csr_matrix(np.eye(3))

    def keras_model():
        import keras

        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    out.update(
        pandas=pandas,
        arrow=arrow,
        torch=torch_state,
        xgboost=xgb_model,
        sklearn=sk_model,
        scipy=sparse,
        keras=keras_model,
    )
    return out


SAMPLES = _samples()
MODULES = {
    "pandas": "pandas",
    "arrow": "pyarrow",
    "torch": "torch",
    "xgboost": "xgboost",
    "sklearn": "sklearn",
    "scipy": "scipy",
    "keras": "keras",
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_codec_loads_without_pickle_and_ignores_planted_pickles(name, tmp_path):
    if name in MODULES:
        pytest.importorskip(MODULES[name])
    obj = SAMPLES[name]()
    folder = tmp_path / "b"
    rc.save({"value": obj}, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["skeleton"]["kind"] == "json"
    assert not any(p.get("pickle") for p in manifest["parts"])
    rc.load(folder, allow_pickle=False)

    marker = tmp_path / "pwned"
    evil = pickle.dumps(Planted(str(marker)))
    for part in manifest["parts"]:
        for record in part["files"]:
            path = folder / record["name"]
            original = path.read_bytes()
            path.write_bytes(evil)
            with pytest.raises(rc.IntegrityError):  # the digest catches it first
                rc.load(folder)
            # now an attacker who can also rewrite the (unsigned) manifest
            forged = json.loads(json.dumps(manifest))
            for p in forged["parts"]:
                for r in p["files"]:
                    if r["name"] == record["name"]:
                        r.update(
                            size=len(evil), digest="sha256:" + hashlib.sha256(evil).hexdigest()
                        )
            (folder / "manifest.json").write_text(json.dumps(forged))
            for allow in (False, True):
                try:
                    rc.load(folder, allow_pickle=allow)
                except Exception:
                    pass
                assert not marker.exists(), (
                    f"{name}: a planted pickle in {record['name']} was executed"
                )
            # and with a key, the forged manifest is refused outright
            path.write_bytes(original)
            (folder / "manifest.json").write_text(json.dumps(manifest))
    rc.save({"value": obj}, folder, key=b"k")
    m = json.loads((folder / "manifest.json").read_text())
    first = m["parts"][0]["files"][0]["name"]
    (folder / first).write_bytes(evil)
    m["parts"][0]["files"][0].update(
        size=len(evil), digest="sha256:" + hashlib.sha256(evil).hexdigest()
    )
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(rc.IntegrityError, match="signature"):
        rc.load(folder, key=b"k")
    assert not os.path.exists(marker)
