"""xgboost: Booster via UBJSON, scikit-learn wrappers with their hyper-parameters and
classes_, DMatrix refused."""

from __future__ import annotations

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

import remote_codecs as rc  # noqa: E402

rng = np.random.default_rng(0)
X = rng.random((200, 4))
y_bin = (X[:, 0] + X[:, 1] > 1).astype(int)
y_multi = (X[:, 0] * 3).astype(int)


def _params(model):
    """get_params() with nan made comparable."""
    return {
        k: ("nan" if isinstance(v, float) and np.isnan(v) else v)
        for k, v in model.get_params().items()
    }


def test_booster_round_trip_without_pickle():
    dtrain = xgb.DMatrix(X, label=y_bin, feature_names=["a", "b", "c", "d"])
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, dtrain, num_boost_round=5)
    booster.set_attr(note="v1")
    data = rc.dumps({"model": booster})
    assert [p.codec for p in rc.inspect(data).parts] == ["xgboost.Booster/ubj"]
    back = rc.loads(data, allow_pickle=False)["model"]
    np.testing.assert_array_equal(back.predict(dtrain), booster.predict(dtrain))
    assert back.feature_names == ["a", "b", "c", "d"] and back.attr("note") == "v1"


@pytest.mark.parametrize(
    ("cls", "y", "extra"),
    [
        ("XGBClassifier", y_bin, {}),
        ("XGBClassifier", y_multi, {"max_depth": 2, "learning_rate": 0.2}),
        ("XGBRegressor", X[:, 0] * 2, {"reg_lambda": 3.0}),
        ("XGBRFRegressor", X[:, 1], {}),
    ],
)
def test_sklearn_wrappers_keep_params_and_classes(cls, y, extra):
    model = getattr(xgb, cls)(n_estimators=4, **extra).fit(X, y)
    data = rc.dumps(model)
    (part,) = rc.inspect(data).parts
    assert part.codec == "xgboost.XGBModel/ubj" and not part.pickle
    back = rc.loads(data, allow_pickle=False)
    assert type(back) is type(model)
    assert _params(back) == _params(model)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    if hasattr(model, "classes_"):
        np.testing.assert_array_equal(back.classes_, model.classes_)
        np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def test_ranker():
    groups = [50, 50, 100]
    model = xgb.XGBRanker(n_estimators=3).fit(X, (X[:, 0] * 4).astype(int), group=groups)
    back = rc.loads(rc.dumps(model), allow_pickle=False)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_unfitted_and_callable_params():
    def my_metric(y_true, y_pred):
        return float(np.mean(np.abs(y_true - y_pred)))

    model = xgb.XGBRegressor(n_estimators=2, eval_metric=my_metric)
    (part,) = rc.inspect(rc.dumps(model)).parts
    assert part.pickle and part.meta["pickled_params"] == ["eval_metric"]
    back = rc.loads(rc.dumps(model))
    assert back.get_params()["eval_metric"](np.ones(2), np.zeros(2)) == 1.0
    fitted = rc.loads(rc.dumps(back.fit(X, X[:, 0])))
    assert fitted.predict(X).shape == (200,)


def test_dmatrix_is_refused_with_a_hint():
    with pytest.raises(
        rc.SerializationError,
        match=r"value\['train'\] is a xgboost.core.DMatrix.*pass the DataFrame or array",
    ):
        rc.dumps({"train": xgb.DMatrix(X, label=y_bin)})
