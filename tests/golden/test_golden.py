"""Artifacts written by older Python and library versions load with today's versions
exactly, or are refused loudly with both versions named: never a silent difference."""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import assert_same  # noqa: E402
from objects import GOLDEN, X  # noqa: E402

import remote_codecs as rc  # noqa: E402

CASES = sorted(
    (env.name, item.name)
    for env in HERE.iterdir()
    if (env / "versions.json").exists()
    for item in env.iterdir()
    if (item / "bundle" / "manifest.json").exists()
)


def _need(name: str) -> None:
    for module in GOLDEN[name][1]:
        pytest.importorskip(module)


def test_there_are_golden_files_from_another_python():
    pythons = {
        json.loads((HERE / env / "versions.json").read_text())["python"][:4] for env, _ in CASES
    }
    assert len(CASES) >= 10 and any(
        not p.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}") for p in pythons
    )


@pytest.mark.parametrize(("env", "name"), CASES)
def test_golden_artifact_loads_exactly_or_is_refused(env, name):
    _need(name)
    folder = HERE / env / name
    written = json.loads((HERE / env / "versions.json").read_text())
    manifest = rc.inspect(folder / "bundle")
    assert manifest.producer["python"] == written["python"]
    if name.startswith("sklearn"):
        import sklearn

        if written["sklearn"] != sklearn.__version__:
            with pytest.raises(rc.DeserializationError) as info:
                rc.load(folder / "bundle", allow_pickle=False)
            assert written["sklearn"] in str(info.value) and sklearn.__version__ in str(info.value)
            return
    loaded = rc.load(folder / "bundle", allow_pickle=False)
    expected_predictions = folder / "predictions.npy"
    if expected_predictions.exists():
        pred = _predict(loaded)
        np.testing.assert_allclose(pred, np.load(expected_predictions), rtol=1e-6, atol=1e-7)
        return
    assert_same(loaded, GOLDEN[name][0]())


def _predict(model):
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    import xgboost as xgb

    return model.predict(xgb.DMatrix(X))


def test_opting_in_to_another_sklearn_version_warns():
    sk_cases = [(e, n) for e, n in CASES if n.startswith("sklearn")]
    if not sk_cases:
        pytest.skip("no scikit-learn golden files")
    sklearn = pytest.importorskip("sklearn")
    env, name = sk_cases[0]
    written = json.loads((HERE / env / "versions.json").read_text())["sklearn"]
    if written == sklearn.__version__:
        pytest.skip("written by this scikit-learn version")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rc.load(HERE / env / name / "bundle", allow_version_mismatch=True)
        except rc.DeserializationError:
            pass  # skops itself may not read it: still loud
    assert any(written in str(w.message) for w in caught)


def pickle_gap() -> list[tuple[str, str, str]]:
    """How the cloudpickle files beside the bundles fare today (for the report)."""
    import cloudpickle

    rows = []
    for env, name in CASES:
        try:
            for module in GOLDEN[name][1]:
                importlib.import_module(module)
        except ImportError:
            continue
        path = HERE / env / name / "object.pkl"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = cloudpickle.loads(path.read_bytes())
        except Exception as exc:
            rows.append((env, name, f"fails: {type(exc).__name__}: {str(exc)[:80]}"))
            continue
        pred_path = HERE / env / name / "predictions.npy"
        try:
            if pred_path.exists():
                diff = float(np.max(np.abs(_predict(obj) - np.load(pred_path))))
                rows.append(
                    (
                        env,
                        name,
                        "loads, same predictions"
                        if diff < 1e-6
                        else f"loads SILENTLY DIFFERENT: max diff {diff:.3g}",
                    )
                )
            else:
                assert_same(obj, GOLDEN[name][0]())
                rows.append((env, name, "loads, same value"))
        except Exception as exc:
            rows.append(
                (env, name, f"loads, then breaks or differs: {type(exc).__name__}: {str(exc)[:80]}")
            )
    return rows


if __name__ == "__main__":
    rows = pickle_gap()
    for env, name, outcome in rows:
        print(f"{env:50} {name:20} {outcome}")
    bad = sum(1 for *_, o in rows if not o.startswith("loads, same"))
    print(f"\n{bad} of {len(rows)} cloudpickle files fail or differ with today's versions")
    sys.exit(0 if os.environ.get("CI") or True else 1)
