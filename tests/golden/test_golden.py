"""Artifacts written by older Python and library versions load with today's versions
exactly, or are refused loudly with both versions named: never a silent difference."""

from __future__ import annotations

import importlib
import json
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


def _installed(library: str) -> str | None:
    from remote_codecs.bundle import installed_version

    return installed_version(library)


def bundle_outcome(env: str, name: str, allow_version_mismatch=False) -> tuple[str, str]:
    """How today's installation reads a golden bundle: ("exact" | "loud" | "hard" |
    "silent", detail). Loud is a refusal naming the writer's and the reader's versions."""
    from remote_codecs.codecs.sklearn import SCIKIT_LEARN_INTERNAL_TYPES

    folder = HERE / env / name
    manifest = rc.inspect(folder / "bundle")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = rc.load(
                folder / "bundle",
                allow_pickle=False,
                trusted=SCIKIT_LEARN_INTERNAL_TYPES,
                allow_version_mismatch=allow_version_mismatch,
            )
    except rc.DeserializationError as exc:
        message = str(exc)
        written = dict(manifest.producer.get("libraries") or {})
        written["python"] = manifest.producer.get("python")
        here = {lib: _installed(lib) for lib in written if lib != "python"}
        here["python"] = "{}.{}.{}".format(*sys.version_info[:3])
        named = [
            lib
            for lib, v in written.items()
            if v and here.get(lib) and v != here[lib] and v in message and here[lib] in message
        ]
        return ("loud", message) if named else ("hard", message)
    except Exception as exc:
        return "hard", f"{type(exc).__name__}: {exc}"
    try:
        expected = folder / "predictions.npy"
        if expected.exists():
            np.testing.assert_allclose(_predict(loaded), np.load(expected), rtol=1e-6, atol=1e-7)
        else:
            assert_same(loaded, GOLDEN[name][0]())
    except AssertionError as exc:
        return "silent", str(exc)[:200]
    return "exact", ""


@pytest.mark.parametrize(("env", "name"), CASES)
def test_golden_artifact_loads_exactly_or_is_refused(env, name):
    """Exact, or refused naming both versions, in whichever direction the versions differ
    (an older environment reading today's files runs this too: ``make compat``)."""
    _need(name)
    written = json.loads((HERE / env / "versions.json").read_text())
    assert rc.inspect(HERE / env / name / "bundle").producer["python"] == written["python"]
    outcome, detail = bundle_outcome(env, name)
    assert outcome in ("exact", "loud"), f"{env}/{name}: {outcome}: {detail}"


def test_golden_scikit_learn_of_another_version_is_refused_by_default():
    for env, name in CASES:
        if not name.startswith("sklearn"):
            continue
        sklearn = pytest.importorskip("sklearn")
        written = json.loads((HERE / env / "versions.json").read_text()).get("sklearn")
        if written and written != sklearn.__version__:
            with pytest.raises(rc.DeserializationError) as info:
                rc.load(HERE / env / name / "bundle", allow_pickle=False)
            assert written in str(info.value) and sklearn.__version__ in str(info.value)


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


def report() -> int:
    """Print how each golden file fares here, bundle and cloudpickle side by side, with
    counts; return the number of bundles that fail hard or load silently different."""
    pickled = {(env, name): outcome for env, name, outcome in pickle_gap()}
    counts: dict[str, int] = {}
    bad = 0
    for env, name in CASES:
        try:
            for module in GOLDEN[name][1]:
                importlib.import_module(module)
        except ImportError:
            continue
        outcome, detail = bundle_outcome(env, name)
        counts[outcome] = counts.get(outcome, 0) + 1
        bad += outcome in ("hard", "silent")
        print(
            f"{env:58} {name:18} bundle: {outcome:6} | cloudpickle: {pickled.get((env, name), '?')}"
        )
        if outcome != "exact":
            print(f"{'':77} {detail[:150]}")
    total = sum(counts.values())
    print(
        f"\nbundles: {counts.get('exact', 0)} exact / {counts.get('loud', 0)} loud / "
        f"{counts.get('hard', 0)} hard error / {counts.get('silent', 0)} silent, of {total}"
    )
    worse = sum(1 for o in pickled.values() if not o.startswith("loads, same"))
    print(f"cloudpickle: {worse} of {len(pickled)} fail or differ with today's versions")
    return bad


if __name__ == "__main__":
    sys.exit(1 if report() else 0)
