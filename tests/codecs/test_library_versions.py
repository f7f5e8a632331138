"""Which library version a model part may be read under is decided once, by the loader,
from the codec's version_policy (xgboost: "no-newer", scikit-learn: "same"), before
anything is decoded: one refusal naming the part, both versions and the opt-ins; one
warning with allow_version_mismatch=True; versions ordered as PEP 440 orders them.
The codec only verifies the recorded behaviour when the loader tells it to ("verify").

Each bundle is made to look written by another version by editing its manifest (the
producer's library version and the part's own record of it)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

import remote_codecs as rc  # noqa: E402
from bundles import edit_manifest, written_by_xgboost  # noqa: E402  (tests/ is on sys.path: conftest.py)

rng = np.random.default_rng(7)
X = rng.random((80, 4))
y = (X[:, 0] + X[:, 2] > 1).astype(int)

XGB = xgb.__version__


def _release(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if match is None:
        pytest.skip(f"the installed version {version} is not a plain release")
    major, minor, micro = (int(n) for n in match.groups())
    return major, minor, micro


@pytest.fixture(scope="module")
def xgb_bundle() -> bytes:
    return rc.dumps(xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X, y))


def _loads_quietly(data: bytes, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return rc.loads(data, allow_pickle=False, **kw)


def _refusal(version: str, here: str, lib: str, codec: str) -> str:
    """What the loader's refusal says: the part, both versions, the opt-ins."""
    return (
        rf"part 0 \({re.escape(codec)}\) was written by {lib} '?{re.escape(version)}'?, .*"
        rf"this {lib} {re.escape(here)}.*allow_version_mismatch=\"verify\".*"
        r"allow_version_mismatch=True"
    )


# -- one decision, one warning --------------------------------------------------------------


def test_a_newer_xgboost_model_loaded_with_the_opt_in_warns_once(xgb_bundle):
    data = written_by_xgboost(xgb_bundle, "99.1.0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = rc.loads(data, allow_pickle=False, allow_version_mismatch=True)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert f"xgboost 99.1.0, a newer version than this xgboost {XGB}" in messages[0]
    assert "loading anyway (allow_version_mismatch=True)" in messages[0]
    np.testing.assert_array_equal(model.predict(X), rc.loads(xgb_bundle).predict(X))


def test_a_newer_xgboost_model_is_refused_once_by_the_loader_naming_the_part(xgb_bundle):
    data = written_by_xgboost(xgb_bundle, "99.1.0")
    with pytest.raises(
        rc.DeserializationError, match=_refusal("99.1.0", XGB, "xgboost", "xgboost.XGBModel/ubj")
    ) as info:
        rc.loads(data, allow_pickle=False)
    assert "Install xgboost==99.1.0" in str(info.value)


def test_the_opt_in_skips_the_fingerprint_and_verify_checks_it(xgb_bundle):
    """With True the loader has decided: nothing is recomputed (a wrong fingerprint loads);
    with "verify" the codec is told to check it, and refuses the wrong one."""
    import base64

    def wrong(manifest):
        record = manifest["parts"][0]["meta"]["fingerprint"]
        values = np.frombuffer(base64.b64decode(record["f8"]), dtype="<f8").copy()
        values[0] += 3.0
        record["f8"] = base64.b64encode(values.tobytes()).decode()

    data = edit_manifest(written_by_xgboost(xgb_bundle, "99.1.0"), wrong)
    with pytest.warns(UserWarning, match="loading anyway"):
        rc.loads(data, allow_pickle=False, allow_version_mismatch=True)
    with pytest.raises(rc.DeserializationError, match=r"largest difference 3\b"):
        rc.loads(data, allow_pickle=False, allow_version_mismatch="verify")
    # the same wrong fingerprint, written by an older xgboost: the policy accepts it, so
    # "verify" has nothing to check
    older = edit_manifest(written_by_xgboost(xgb_bundle, "2.0.3"), wrong)
    _loads_quietly(older, allow_version_mismatch="verify")


# -- versions ordered as PEP 440 orders them -------------------------------------------------


def _xgb_versions() -> dict[str, list[str]]:
    major, minor, micro = _release(XGB)
    return {
        "older": [
            f"{major}.{minor}.{micro}rc1",  # a pre-release of this very version
            f"{major}.{minor}.{micro}.dev0",
            f"{major}.{minor}.{micro}b2",
            f"{major}.{minor}.{micro}+cu121",  # another build of this release
            f"{major}.{minor}.{micro}.0",  # the same version, written longer
        ],
        "newer": [
            f"{major}.{minor}.{micro}.post1",
            f"{major}.{minor}.{micro + 1}rc1",
            f"{major}.{minor + 1}.0.dev0",
            f"{major}.{minor}.{micro + 1}",
            f"{major + 1}!0.1",  # a later epoch
        ],
    }


@pytest.mark.parametrize("which", range(5))
def test_a_pre_release_or_another_build_of_this_xgboost_is_not_newer(xgb_bundle, which):
    version = _xgb_versions()["older"][which]
    model = _loads_quietly(written_by_xgboost(xgb_bundle, version))
    np.testing.assert_array_equal(model.predict(X), rc.loads(xgb_bundle).predict(X))


@pytest.mark.parametrize("which", range(5))
def test_a_post_release_or_a_later_pre_release_of_xgboost_is_newer(xgb_bundle, which):
    version = _xgb_versions()["newer"][which]
    data = written_by_xgboost(xgb_bundle, version)
    with pytest.raises(
        rc.DeserializationError, match=_refusal(version, XGB, "xgboost", "xgboost.XGBModel/ubj")
    ):
        rc.loads(data, allow_pickle=False)
    with pytest.warns(UserWarning, match=re.escape(version)):
        rc.loads(data, allow_pickle=False, allow_version_mismatch=True)
    _loads_quietly(data, allow_version_mismatch="verify")  # it computes the same outputs


def test_a_version_that_is_no_version_is_refused_naming_it(xgb_bundle):
    data = written_by_xgboost(xgb_bundle, "nightly\x1b[31m")
    with pytest.raises(
        rc.DeserializationError, match=r"'nightly\\x1b\[31m', a version that cannot be compared"
    ):
        rc.loads(data, allow_pickle=False)
    with pytest.warns(UserWarning, match="cannot be compared"):
        rc.loads(data, allow_pickle=False, allow_version_mismatch=True)


# -- a signed bundle: the key vouches for who wrote it, not for the library version ----------

KEY = b"k" * 32


def _resign(data: bytes, key: bytes) -> bytes:
    """Sign the manifest again as docs/ARCHITECTURE.md describes: HMAC-SHA256 over the
    canonical JSON of the manifest without its signature (sorted keys, no spaces)."""

    def edit(manifest):
        body = {k: v for k, v in manifest.items() if k != "signature"}
        raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        digest = hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()
        manifest["signature"] = {"alg": "hmac-sha256", "value": digest}

    return edit_manifest(data, edit)


def test_a_signed_model_from_a_newer_xgboost_is_refused_and_the_opt_in_loads_it():
    model = xgb.XGBRegressor(n_estimators=3).fit(X, X[:, 1])
    data = _resign(written_by_xgboost(rc.dumps(model, key=KEY), "99.0.0"), KEY)
    with pytest.raises(rc.IntegrityError):  # not signed with this key
        rc.loads(data, key=b"other" * 8, allow_version_mismatch=True)
    with pytest.raises(
        rc.DeserializationError, match=_refusal("99.0.0", XGB, "xgboost", "xgboost.XGBModel/ubj")
    ):
        rc.loads(data, key=KEY, allow_pickle=False)
    back = rc.loads(data, key=KEY, allow_pickle=False, allow_version_mismatch="verify")
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


# -- scikit-learn: "same" -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sklearn_model():
    pytest.importorskip("skops")
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    return sklearn_lm.LogisticRegression().fit(X, y)


def _sk_written_by(folder: Path, version: str) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["producer"]["libraries"]["scikit-learn"] = version
    manifest["parts"][0]["meta"]["sklearn_version"] = version
    path.write_text(json.dumps(manifest))


def _sk_version() -> str:
    import sklearn

    return sklearn.__version__


def test_another_scikit_learn_is_refused_once_and_the_opt_in_warns_once(tmp_path, sklearn_model):
    here = _sk_version()
    major, minor, micro = _release(here)
    for version in (f"{major}.{minor}.{micro}rc1", f"{major}.{minor}.{micro}.post1", "1.3.2"):
        if version == here:
            continue
        rc.save(sklearn_model, tmp_path / "b")
        _sk_written_by(tmp_path / "b", version)
        with pytest.raises(
            rc.DeserializationError,
            match=_refusal(version, here, "scikit-learn", "sklearn.BaseEstimator/skops"),
        ):
            rc.load(tmp_path / "b", allow_pickle=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            back = rc.load(tmp_path / "b", allow_pickle=False, allow_version_mismatch=True)
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert len(messages) == 1, messages
        assert (
            f"scikit-learn {version}, another version than this scikit-learn {here}"
            in (messages[0])
        )
        np.testing.assert_array_equal(back.predict_proba(X), sklearn_model.predict_proba(X))


def test_the_same_scikit_learn_written_otherwise_is_the_same_version(tmp_path, sklearn_model):
    """ "same" compares versions, not strings: 1.9.1.0 is 1.9.1, and a local build label
    (+cpu) names another build of the same release."""
    major, minor, micro = _release(_sk_version())
    for version in (f"{major}.{minor}.{micro}.0", f"{major}.{minor}.{micro}+cpu"):
        rc.save(sklearn_model, tmp_path / "b")
        _sk_written_by(tmp_path / "b", version)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back = rc.load(tmp_path / "b", allow_pickle=False)
        np.testing.assert_array_equal(back.predict_proba(X), sklearn_model.predict_proba(X))


def test_verify_under_another_scikit_learn_recomputes_and_loads(tmp_path, sklearn_model):
    rc.save(sklearn_model, tmp_path / "b")
    _sk_written_by(tmp_path / "b", "1.3.2" if _sk_version() != "1.3.2" else "1.2.2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = rc.load(tmp_path / "b", allow_pickle=False, allow_version_mismatch="verify")
    np.testing.assert_array_equal(back.predict_proba(X), sklearn_model.predict_proba(X))
