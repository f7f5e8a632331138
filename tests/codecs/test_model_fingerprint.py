"""Behavioural fingerprints of scikit-learn models across versions: recorded at save;
with allow_version_mismatch="verify" under another version, recomputed and compared:
same outputs load, different ones are refused naming the largest difference."""

from __future__ import annotations

import base64
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skops")

# a scikit-learn version other than this one, made to look like the writer's
OTHER = "1.3.2" if sklearn.__version__ != "1.3.2" else "1.2.2"

from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.naive_bayes import MultinomialNB  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import remote_codecs as rc  # noqa: E402
from remote_codecs.codecs.sklearn import SCIKIT_LEARN_INTERNAL_TYPES  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
rng = np.random.default_rng(2)
X = rng.random((150, 5))
y = (X[:, 0] + X[:, 3] > 1).astype(int)


def _written_by(folder: Path, version: str, edit_fingerprint=None) -> None:
    """Make the bundle say scikit-learn ``version`` wrote it (manifest and part meta)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["producer"]["libraries"]["scikit-learn"] = version
    meta = manifest["parts"][0]["meta"]
    meta["sklearn_version"] = version
    if edit_fingerprint:
        edit_fingerprint(meta["fingerprint"])
    path.write_text(json.dumps(manifest))


def _load(folder: Path, mismatch, **kw):
    """Load with the loader's allow_version_mismatch (``"verify"`` travels through
    options= until the keyword of load() accepts it)."""
    if mismatch == "verify":
        kw["options"] = {"allow_version_mismatch": "verify"}
    else:
        kw["allow_version_mismatch"] = mismatch
    return rc.load(folder, allow_pickle=False, trusted=SCIKIT_LEARN_INTERNAL_TYPES, **kw)


MODELS = {
    "logistic": (lambda: LogisticRegression().fit(X, y), "predict_proba"),
    "forest": (
        lambda: make_pipeline(StandardScaler(), RandomForestClassifier(8, random_state=0)).fit(
            X, y
        ),
        "predict_proba",
    ),
    "regression": (lambda: LinearRegression().fit(X, X @ np.arange(5.0)), "predict"),
    "svc": (lambda: SVC().fit(X, y), "decision_function"),
    "nonneg": (lambda: MultinomialNB().fit(X, y), "predict_proba"),
    "transformer": (lambda: StandardScaler().fit(X), "transform"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_verify_loads_a_model_that_computes_the_same_outputs(tmp_path, name):
    build, method = MODELS[name]
    model = build()
    rc.save(model, tmp_path / "b")
    record = rc.inspect(tmp_path / "b").parts[0].meta["fingerprint"]
    assert record["method"] == method and record["features"] == 5 and "f8" in record
    _written_by(tmp_path / "b", OTHER)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = _load(tmp_path / "b", "verify")
    np.testing.assert_array_equal(getattr(back, method)(X), getattr(model, method)(X))


def _shift(delta: float):
    def edit(record):
        values = np.frombuffer(base64.b64decode(record["f8"]), dtype="<f8").copy()
        values[3] += delta
        record["f8"] = base64.b64encode(values.tobytes()).decode()

    return edit


@pytest.mark.parametrize("name", ["logistic", "forest", "regression"])
def test_verify_refuses_a_model_that_computes_different_outputs(tmp_path, name):
    rc.save(MODELS[name][0](), tmp_path / "b")
    _written_by(tmp_path / "b", OTHER, _shift(0.25))
    with pytest.raises(
        rc.DeserializationError,
        match=rf"written by scikit-learn {re.escape(OTHER)}, "
        rf"read by scikit-learn {sklearn.__version__}.*"
        r"largest difference 0\.25",
    ):
        _load(tmp_path / "b", "verify")


def test_a_difference_within_float_tolerance_loads(tmp_path):
    rc.save(MODELS["regression"][0](), tmp_path / "b")
    _written_by(tmp_path / "b", OTHER, _shift(1e-12))
    _load(tmp_path / "b", "verify")


def test_another_version_without_opt_in_is_refused_and_true_warns(tmp_path):
    rc.save(MODELS["logistic"][0](), tmp_path / "b")
    _written_by(tmp_path / "b", "1.10.0")  # newer or older: "same" refuses both
    with pytest.raises(
        rc.DeserializationError,
        match=rf"scikit-learn 1\.10\.0.*scikit-learn {sklearn.__version__}.*\"verify\".*True",
    ):
        _load(tmp_path / "b", False)
    with pytest.warns(UserWarning, match=r"1\.10\.0.*loading anyway"):
        _load(tmp_path / "b", True)


def test_same_version_never_recomputes(tmp_path):
    rc.save(MODELS["logistic"][0](), tmp_path / "b")
    _written_by(tmp_path / "b", sklearn.__version__, _shift(5.0))  # wrong, and never looked at
    _load(tmp_path / "b", "verify")


def test_a_model_without_a_numeric_probe_records_why_and_verify_refuses(tmp_path):
    pd = pytest.importorskip("pandas")
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"a": X[:, 0], "c": np.array(list("xyz"))[np.arange(150) % 3]})
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["c"]), (StandardScaler(), ["a"])),
        LogisticRegression(),
    ).fit(frame, y)
    rc.save(pipe, tmp_path / "b")
    record = rc.inspect(tmp_path / "b").parts[0].meta["fingerprint"]
    assert "numeric probe" in record["none"]
    _written_by(tmp_path / "b", OTHER)
    with pytest.raises(
        rc.DeserializationError, match=r"no behavioural fingerprint: .*numeric probe"
    ):
        _load(tmp_path / "b", "verify")


def test_a_frame_fitted_model_is_probed_with_its_column_names(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=list("abcde"))
    model = LogisticRegression().fit(frame, y)
    rc.save(model, tmp_path / "b")
    assert "f8" in rc.inspect(tmp_path / "b").parts[0].meta["fingerprint"]
    _written_by(tmp_path / "b", OTHER)
    back = _load(tmp_path / "b", "verify")
    np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))


@pytest.mark.parametrize(
    "record",
    [
        {"method": "__reduce__", "probe": "signed", "features": 5, "shape": [1], "f8": ""},
        {"method": "predict", "probe": "signed", "features": 10**9, "shape": [1], "f8": ""},
        {"method": "predict", "probe": "signed", "features": 5, "shape": [10**9], "f8": ""},
        {"method": "predict", "probe": "signed", "features": 5, "shape": [2], "f8": "AAAA"},
        {"method": "predict", "probe": "evil", "features": 5, "shape": [2], "f8": ""},
        "not a record",
    ],
)
def test_a_malformed_fingerprint_is_a_deserialization_error(tmp_path, record):
    rc.save(MODELS["regression"][0](), tmp_path / "b")

    def edit(meta_record):
        meta_record.clear()
        if isinstance(record, dict):
            meta_record.update(record)

    _written_by(tmp_path / "b", OTHER, edit)
    if not isinstance(record, dict):  # a fingerprint that is not even an object
        path = tmp_path / "b" / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["parts"][0]["meta"]["fingerprint"] = record
        path.write_text(json.dumps(manifest))
    with pytest.raises(rc.DeserializationError):
        _load(tmp_path / "b", "verify")


def _fingerprinted(bundle: Path) -> bool:
    return "fingerprint" in rc.inspect(bundle).parts[0].meta


GOLDEN_SKLEARN = sorted(GOLDEN.glob("*/sklearn_*/bundle"))
# written before fingerprints were recorded (the oldest stack's golden files)
GOLDEN_UNPRINTED = [b for b in GOLDEN_SKLEARN if not _fingerprinted(b)]
# written with a fingerprint (today's stack's golden files, read by the oldest: make compat)
GOLDEN_PRINTED = [b for b in GOLDEN_SKLEARN if _fingerprinted(b)]


def _golden_id(bundle: Path) -> str:
    return f"{bundle.parents[1].name}/{bundle.parent.name}"


@pytest.mark.parametrize("bundle", GOLDEN_PRINTED, ids=_golden_id)
def test_golden_models_with_a_fingerprint_verify_exactly_or_refuse_naming_both(bundle):
    """Under another scikit-learn, "verify" loads a model that predicts exactly as it did,
    or refuses it naming the writer's and the reader's versions."""
    from golden.test_golden import bundle_outcome

    written = rc.inspect(bundle).producer["libraries"]["scikit-learn"]
    if written == sklearn.__version__:
        pytest.skip("written by this scikit-learn version")
    env, name = bundle.parents[1].name, bundle.parent.name
    outcome, detail = bundle_outcome(env, name, allow_version_mismatch="verify")
    assert outcome in ("exact", "loud"), f"{outcome}: {detail}"


@pytest.mark.parametrize("bundle", GOLDEN_UNPRINTED, ids=_golden_id)
def test_golden_models_from_another_version_have_no_fingerprint_and_verify_says_so(bundle):
    written = rc.inspect(bundle).producer["libraries"]["scikit-learn"]
    if written == sklearn.__version__:
        pytest.skip("written by this scikit-learn version")
    with pytest.raises(
        rc.DeserializationError,
        match=rf"written by scikit-learn {written}, read by scikit-learn "
        rf"{sklearn.__version__}\) has no behavioural fingerprint",
    ):
        _load(bundle, "verify")
