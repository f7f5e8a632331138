"""scikit-learn through skops: no pickle, types trusted by the loader, versions checked."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skops")

# a scikit-learn version other than this one, made to look like the writer's
OTHER = "1.3.2" if sklearn.__version__ != "1.3.2" else "1.2.2"

from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402

import remote_codecs as rc  # noqa: E402
from remote_codecs.codecs.sklearn import SCIKIT_LEARN_INTERNAL_TYPES  # noqa: E402

rng = np.random.default_rng(0)
X = rng.random((100, 4))
y = (X[:, 0] > 0.5).astype(int)


def test_pipeline_round_trip_without_pickle(tmp_path):
    pipe = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)
    ).fit(X, y)
    rc.save({"model": pipe}, tmp_path / "b")
    (part,) = rc.inspect(tmp_path / "b").parts
    assert part.codec == "sklearn.BaseEstimator/skops" and not part.pickle
    assert part.meta["sklearn_version"] == sklearn.__version__
    assert rc.inspect(tmp_path / "b").producer["libraries"]["scikit-learn"] == sklearn.__version__
    # skops does not trust a tree's node arrays from a stranger: the loader decides
    with pytest.raises(
        rc.DeserializationError,
        match=r"not trusted: sklearn\.tree\._tree\.Tree .*SCIKIT_LEARN_INTERNAL_TYPES",
    ):
        rc.load(tmp_path / "b", allow_pickle=False)
    back = rc.load(tmp_path / "b", allow_pickle=False, trusted=SCIKIT_LEARN_INTERNAL_TYPES)
    np.testing.assert_array_equal(back["model"].predict_proba(X), pipe.predict_proba(X))
    back = rc.load(tmp_path / "b", allow_pickle=False, trusted=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(back["model"].predict_proba(X), pipe.predict_proba(X))


def _double(x):
    return x * 2


def test_untrusted_types_are_named_and_need_the_loaders_trust():
    pipe = make_pipeline(FunctionTransformer(_double), LogisticRegression()).fit(X, y)
    data = rc.dumps(pipe)
    with pytest.raises(
        rc.DeserializationError, match=r"not trusted: test_sklearn\._double\. .*trusted="
    ):
        rc.loads(data, allow_pickle=False)
    back = rc.loads(data, trusted=["test_sklearn._double"], allow_pickle=False)
    np.testing.assert_array_equal(back.predict(X), pipe.predict(X))


def test_another_sklearn_version_is_refused_unless_asked(tmp_path):
    model = LogisticRegression().fit(X, y)
    rc.save(model, tmp_path / "b")
    manifest = tmp_path / "b" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["parts"][0]["meta"]["sklearn_version"] = OTHER
    m["producer"]["libraries"]["scikit-learn"] = OTHER
    manifest.write_text(json.dumps(m))
    with pytest.raises(
        rc.DeserializationError,
        match=rf"scikit-learn {re.escape(OTHER)}.*scikit-learn {sklearn.__version__}"
        r".*allow_version_mismatch=True",
    ):
        rc.load(tmp_path / "b")
    with pytest.warns(UserWarning, match=re.escape(OTHER)):
        back = rc.load(tmp_path / "b", allow_version_mismatch=True)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


class Unrepresentable(sklearn.base.BaseEstimator):
    def __init__(self):
        self.gen = None

    def fit(self, X, y=None):
        self.lookup_ = {("tuple", "key"): np.arange(3)}  # skops cannot store tuple keys
        return self


def test_skops_fallback_is_pickle_and_marked():
    est = Unrepresentable().fit(X)
    data = rc.dumps(est)
    (part,) = rc.inspect(data).parts
    if part.meta["format"] == "skops":
        pytest.skip("this skops version represents the estimator")
    assert part.pickle and part.meta["format"] == "pickle" and part.meta["why_pickle"]
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(data, allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rc.loads(data).lookup_[("tuple", "key")].tolist() == [0, 1, 2]
