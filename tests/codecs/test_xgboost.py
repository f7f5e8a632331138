"""xgboost: Booster via UBJSON, scikit-learn wrappers with their hyper-parameters and
classes_, DMatrix refused."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

import remote_codecs as rc  # noqa: E402
from bundles import edit_manifest, written_by_xgboost  # noqa: E402

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


# -- helpers: what an attacker or another xgboost version leaves in a bundle ------------


def _load(data: bytes, mismatch):
    """Load with the loader's allow_version_mismatch (``"verify"`` travels through
    options= until the keyword of loads() accepts it)."""
    if mismatch == "verify":
        return rc.loads(data, allow_pickle=False, options={"allow_version_mismatch": "verify"})
    return rc.loads(data, allow_pickle=False, allow_version_mismatch=mismatch)


# -- safety ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile_class",
    [
        "subprocess:run",
        "os:system",
        "builtins:eval",
        "xgboost.sklearn:XGBModel.__init__.__globals__",
        "xgboost.core:Booster",
        "xgboost.sklearn:_wrap_evaluation_matrices",
        None,
        5,
    ],
)
def test_a_class_off_the_wrapper_allowlist_is_never_resolved(tmp_path, hostile_class):
    marker = tmp_path / "pwned"
    data = rc.dumps(xgb.XGBRegressor(n_estimators=2))

    def edit(manifest):
        manifest["parts"][0]["meta"].update(
            {"class": hostile_class, "params": {"args": ["touch", str(marker)]}, "fitted": False}
        )

    hostile = edit_manifest(data, edit)
    with pytest.raises(
        rc.DeserializationError, match=r"not one of xgboost's scikit-learn wrappers"
    ):
        rc.loads(hostile, allow_pickle=False)
    with pytest.raises(rc.DeserializationError, match=repr(hostile_class).replace("(", r"\(")):
        rc.loads(hostile)  # not even with pickle allowed: the class name is not code to run
    assert not marker.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("params", {"missing": {"$float": "__import__('os')"}}, "not a float"),
        ("params", ["n_estimators", 3], "not a JSON object"),
        (
            "params",
            {
                "n_estimators": [
                    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
                ]
            },
            "nested too deeply",
        ),
        ("fitted", "yes", "'fitted' is not true or false"),
        ("evals_result", [1, 2], "evals_result is not a JSON object"),
        ("pickled_params", "eval_metric", "pickled_params is not a list"),
    ],
)
def test_malformed_wrapper_meta_is_a_deserialization_error(field, value, message):
    data = rc.dumps(xgb.XGBRegressor(n_estimators=2).fit(X, X[:, 0]))

    def edit(manifest):
        manifest["parts"][0]["meta"][field] = value

    with pytest.raises(rc.DeserializationError, match=message):
        rc.loads(edit_manifest(data, edit), allow_pickle=False)


def test_a_users_subclass_is_pickled_not_resolved_by_name():
    class MyRegressor(xgb.XGBRegressor):
        pass

    model = MyRegressor(n_estimators=2).fit(X, X[:, 0])
    data = rc.dumps(model)
    assert rc.inspect(data).needs_pickle
    with pytest.raises(rc.DeserializationError, match="allow_pickle=False"):
        rc.loads(data, allow_pickle=False)
    back = rc.loads(data)
    assert type(back).__name__ == "MyRegressor"
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


# -- exactness ---------------------------------------------------------------------------


def _config(booster):
    import json

    return json.loads(booster.save_config())


def test_booster_keeps_its_training_configuration_and_continues_identically():
    dtrain = xgb.DMatrix(X, label=X[:, 0] * 3 + X[:, 1])
    params = {"max_depth": 2, "eta": 0.1, "seed": 7, "eval_metric": ["rmse", "mae"], "lambda": 3.0}
    booster = xgb.train(params, dtrain, num_boost_round=4)
    back = rc.loads(rc.dumps(booster), allow_pickle=False)
    assert _config(back) == _config(booster)
    learner = _config(back)["learner"]
    assert learner["gradient_booster"]["tree_train_param"]["max_depth"] == "2"
    assert float(learner["gradient_booster"]["tree_train_param"]["eta"]) == pytest.approx(0.1)
    assert learner["generic_param"]["seed"] == "7"
    assert learner["metrics"] == [{"name": "rmse"}, {"name": "mae"}]
    # training continued without repeating the parameters grows the same trees
    continued_original = xgb.train({}, dtrain, num_boost_round=3, xgb_model=booster)
    continued_loaded = xgb.train({}, dtrain, num_boost_round=3, xgb_model=back)
    assert continued_loaded.save_raw("json") == continued_original.save_raw("json")
    assert continued_loaded.get_dump() == continued_original.get_dump()


def test_early_stopping_keeps_evals_result_and_best_iteration():
    model = xgb.XGBRegressor(n_estimators=200, early_stopping_rounds=3, learning_rate=0.6).fit(
        X[:150],
        X[:150, 0] + rng.normal(0, 0.3, 150),
        eval_set=[(X[150:], X[150:, 0])],
        verbose=False,
    )
    assert model.best_iteration < 199
    back = rc.loads(rc.dumps(model), allow_pickle=False)
    assert back.evals_result() == model.evals_result()
    assert (back.best_iteration, back.best_score) == (model.best_iteration, model.best_score)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert _config(back.get_booster()) == _config(model.get_booster())


def test_categorical_features_round_trip_exactly():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "x": X[:, 0],
            "colour": pd.Categorical(np.array(["red", "green", "blue"])[(X[:, 1] * 3).astype(int)]),
        }
    )
    model = xgb.XGBClassifier(n_estimators=5, enable_categorical=True, tree_method="hist").fit(
        frame, y_bin
    )
    data = rc.dumps(model)
    (part,) = rc.inspect(data).parts
    assert "categorical" in part.meta["fingerprint"]["none"]
    back = rc.loads(data, allow_pickle=False)
    np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))
    assert back.get_booster().feature_types == ["float", "c"]
    # no fingerprint: "verify" under another version says so instead of guessing
    with pytest.raises(rc.DeserializationError, match=r"no behavioural fingerprint: .*categorical"):
        _load(written_by_xgboost(data, "99.0.0"), "verify")


def test_multi_output_regression_round_trips_exactly():
    targets = np.stack([X[:, 0], X[:, 1] * 2, X[:, 2] - X[:, 3]], axis=1)
    model = xgb.XGBRegressor(
        n_estimators=4, tree_method="hist", multi_strategy="multi_output_tree"
    ).fit(X, targets)
    back = rc.loads(rc.dumps(model), allow_pickle=False)
    assert back.predict(X).shape == (200, 3)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert back.get_params()["multi_strategy"] == "multi_output_tree"


def test_ranker_keeps_its_objective_and_fingerprint():
    groups = [50, 50, 100]
    relevance = (X[:, 0] * 4).astype(int)
    model = xgb.XGBRanker(n_estimators=3, objective="rank:ndcg", eval_metric="ndcg@5").fit(
        X, relevance, group=groups
    )
    data = rc.dumps(model)
    assert "f8" in rc.inspect(data).parts[0].meta["fingerprint"]
    back = rc.loads(data, allow_pickle=False)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert _config(back.get_booster())["learner"]["objective"]["name"] == "rank:ndcg"
    np.testing.assert_array_equal(
        _load(written_by_xgboost(data, "99.0.0"), "verify").predict(X), model.predict(X)
    )


# -- versions ----------------------------------------------------------------------------


def _booster():
    return xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
        xgb.DMatrix(X, label=y_multi),
        num_boost_round=3,
    )


@pytest.mark.parametrize("kind", ["booster", "classifier"])
def test_a_model_from_a_newer_xgboost_is_refused_naming_both_versions(kind):
    model = _booster() if kind == "booster" else xgb.XGBClassifier(n_estimators=3).fit(X, y_multi)
    data = written_by_xgboost(rc.dumps(model), "99.1.0")
    with pytest.raises(
        rc.DeserializationError,
        match=rf"xgboost 99\.1\.0.*xgboost {xgb.__version__}.*allow_version_mismatch=\"verify\"",
    ):
        _load(data, False)
    with pytest.warns(UserWarning, match=r"99\.1\.0.*loading anyway"):
        _load(data, True)


def test_a_model_from_an_older_xgboost_loads_without_opt_in():
    data = written_by_xgboost(rc.dumps(_booster()), "2.0.3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _load(data, False)
        # xgboost promises to read older models: "verify" has nothing to do here (nor
        # does it need a fingerprint, which older bundles do not have)
        _load(_tamper_fingerprint(data, 5.0), "verify")


@pytest.mark.parametrize("kind", ["booster", "classifier", "regressor"])
def test_verify_loads_a_model_that_computes_the_same_outputs(kind):
    if kind == "booster":
        model = _booster()
    elif kind == "classifier":
        model = xgb.XGBClassifier(n_estimators=3).fit(X, y_multi)
    else:
        model = xgb.XGBRegressor(n_estimators=3, missing=0.5).fit(X, X[:, 0])
    data = written_by_xgboost(rc.dumps(model), "99.1.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = _load(data, "verify")
    dm = xgb.DMatrix(X)
    ours = model if kind == "booster" else model.get_booster()
    theirs = back if kind == "booster" else back.get_booster()
    np.testing.assert_array_equal(theirs.predict(dm), ours.predict(dm))


def _tamper_fingerprint(data: bytes, delta: float) -> bytes:
    import base64

    def edit(manifest):
        record = manifest["parts"][0]["meta"]["fingerprint"]
        values = np.frombuffer(base64.b64decode(record["f8"]), dtype="<f8").copy()
        values[5] += delta
        record["f8"] = base64.b64encode(values.tobytes()).decode()

    return edit_manifest(data, edit)


@pytest.mark.parametrize("kind", ["booster", "classifier"])
def test_verify_refuses_a_model_that_computes_different_outputs(kind):
    model = _booster() if kind == "booster" else xgb.XGBClassifier(n_estimators=3).fit(X, y_multi)
    data = _tamper_fingerprint(written_by_xgboost(rc.dumps(model), "99.1.0"), 0.0671)
    with pytest.raises(
        rc.DeserializationError,
        match=rf"written by xgboost 99\.1\.0, read by xgboost {xgb.__version__}.*largest difference 0\.0671",
    ):
        _load(data, "verify")
    # a difference below float tolerance is no difference
    _load(_tamper_fingerprint(written_by_xgboost(rc.dumps(model), "99.1.0"), 1e-9), "verify")


def test_same_version_never_checks_the_fingerprint():
    data = _tamper_fingerprint(rc.dumps(_booster()), 5.0)  # a wrong fingerprint is not looked at
    _load(data, "verify")
    _load(data, False)


GOLDEN_OBJECTS = Path(__file__).resolve().parents[1] / "golden" / "objects.py"
GOLDEN = sorted(GOLDEN_OBJECTS.parent.glob("*/xgb_*/bundle"))


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in version.split("+")[0].split(".")[:3])


def _golden_by(newer: bool) -> list[Path]:
    return [
        b
        for b in GOLDEN
        if (_release(rc.inspect(b).producer["libraries"]["xgboost"]) > _release(xgb.__version__))
        == newer
    ]


@pytest.mark.parametrize(
    "bundle", _golden_by(newer=True), ids=lambda p: f"{p.parents[1].name}/{p.parent.name}"
)
@pytest.mark.parametrize("mismatch", [False, "verify"])
def test_golden_models_from_a_newer_xgboost_load_exactly_or_are_refused_naming_both(
    bundle, mismatch
):
    """An older xgboost (make compat) reads today's golden models exactly, or refuses them
    naming the writer's and the reader's versions; with "verify" too."""
    from golden.test_golden import bundle_outcome

    env, name = bundle.parents[1].name, bundle.parent.name
    outcome, detail = bundle_outcome(env, name, allow_version_mismatch=mismatch)
    assert outcome in ("exact", "loud"), f"{outcome}: {detail}"


@pytest.mark.parametrize(
    "bundle", _golden_by(newer=False), ids=lambda p: f"{p.parents[1].name}/{p.parent.name}"
)
@pytest.mark.parametrize("mismatch", [False, "verify"])
def test_golden_models_from_an_older_xgboost_load_exactly(bundle, mismatch):
    written = rc.inspect(bundle).producer["libraries"]["xgboost"]
    if written == xgb.__version__:
        pytest.skip("written by this xgboost version")
    data_kw = {"options": {"allow_version_mismatch": "verify"}} if mismatch else {}
    model = rc.load(bundle, allow_pickle=False, **data_kw)
    spec = importlib.util.spec_from_file_location("golden_objects", GOLDEN_OBJECTS)
    objects = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(objects)
    expected = np.load(bundle.parent / "predictions.npy")
    if hasattr(model, "predict_proba"):
        got = model.predict_proba(objects.X)
    else:
        got = model.predict(xgb.DMatrix(objects.X))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
