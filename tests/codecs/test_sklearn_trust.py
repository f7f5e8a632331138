"""scikit-learn parts from the attacker's side: a skops schema edited inside a bundle
never runs anything; only skops' own trusted types and the loader's trusted= load."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skops")
blake3 = pytest.importorskip("blake3")

from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402

import remote_codecs as rc  # noqa: E402

rng = np.random.default_rng(1)
X = rng.random((120, 4))
y = (X[:, 0] + X[:, 2] > 1).astype(int)


def _rewrite_skops(folder: Path, edit) -> None:
    """Replace the bundle's skops part by one whose schema went through ``edit(schema)``,
    with the manifest's size and digest updated (what someone who can write the store
    and holds no key can do)."""
    (part,) = folder.glob("*.skops")
    src = zipfile.ZipFile(io.BytesIO(part.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "schema.json":
                schema = json.loads(body)
                edit(schema)
                body = json.dumps(schema).encode()
            dst.writestr(info.filename, body)
    data = out.getvalue()
    part.write_bytes(data)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for record in manifest["parts"][0]["files"]:
        if record["name"] == part.name:
            record["size"] = len(data)
            record["digest"] = "blake3:" + blake3.blake3(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def _json_node(value) -> dict:
    return {
        "__class__": type(value).__name__,
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
        "__id__": id(value),
    }


def _list_node(module: str, name: str, items: list) -> dict:
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ListNode",
        "content": [_json_node(v) for v in items],
        "__id__": 424242,
    }


def _attributes(schema: dict) -> dict:
    """The attribute nodes of the top-level estimator in a skops schema."""
    return schema["content"]["content"]


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("subprocess", "run", lambda marker: ["touch", str(marker)]),
        ("subprocess", "check_call", lambda marker: ["touch", str(marker)]),
        # trusted by name prefix before: numpy.* ran f2py with the file's own arguments
        ("numpy.f2py.f2py2e", "run_main", lambda marker: ["-m", "evilmodule", str(marker)]),
        ("os", "system", lambda marker: f"touch {marker}"),
    ],
)
def test_a_hostile_node_is_refused_and_never_runs(tmp_path, monkeypatch, module, name, args):
    monkeypatch.chdir(tmp_path)  # f2py writes evilmodule.c into the working directory
    marker = tmp_path / "pwned"
    model = LogisticRegression().fit(X, y)
    rc.save(model, tmp_path / "b")
    items = args(marker)

    def edit(schema):
        _attributes(schema)["C"] = _list_node(
            module, name, items if isinstance(items, list) else [items]
        )

    _rewrite_skops(tmp_path / "b", edit)
    for allow_pickle in (False, True):
        with pytest.raises(rc.DeserializationError, match=rf"not trusted: {module}\.{name}"):
            rc.load(tmp_path / "b", allow_pickle=allow_pickle)
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.parametrize(
    "name",
    [
        "sklearn.utils._testing.assert_run_python_script_without_output",
        "numpy.testing._private.utils.runstring",
        "scipy.io.savemat",
    ],
)
def test_no_type_is_trusted_for_its_library_prefix(tmp_path, name):
    rc.save(LogisticRegression().fit(X, y), tmp_path / "b")
    module, _, attr = name.rpartition(".")
    _rewrite_skops(
        tmp_path / "b",
        lambda schema: _attributes(schema).__setitem__("C", _list_node(module, attr, ["x"])),
    )
    with pytest.raises(rc.DeserializationError, match=rf"not trusted: {name.replace('.', '[.]')}"):
        rc.load(tmp_path / "b", allow_pickle=False)


def test_a_tree_is_untrusted_unless_the_loader_trusts_it(tmp_path):
    """skops leaves sklearn.tree._tree.Tree untrusted (its node arrays are read without
    bounds checks); trust comes from the loader's arguments only."""
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    rc.save(model, tmp_path / "b")
    with pytest.raises(rc.DeserializationError, match=r"sklearn\.tree\._tree\.Tree"):
        rc.load(tmp_path / "b", allow_pickle=False)
    back = rc.load(tmp_path / "b", allow_pickle=False, trusted=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def _frame():
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(
        {
            "a": X[:, 0],
            "b": X[:, 1],
            "colour": pd.Categorical(np.array(["red", "green", "blue"])[(X[:, 2] * 3).astype(int)]),
        }
    )


TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def _fit_from_dtype(frame, **kw):
    """``HistGradientBoostingClassifier(categorical_features="from_dtype")`` fitted on
    ``frame``; skipped where scikit-learn has no such option."""
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", **kw)
    try:
        return model.fit(frame, y)
    except ValueError as exc:  # scikit-learn's InvalidParameterError
        if "from_dtype" not in str(exc):
            raise
        pytest.skip(
            f"scikit-learn {sklearn.__version__} has no categorical_features='from_dtype' "
            "(added in scikit-learn 1.4)"
        )


def test_hist_gradient_boosting_from_dtype_needs_no_trust_for_its_partial(tmp_path):
    frame = _frame()
    model = _fit_from_dtype(frame, max_iter=5, random_state=0)
    rc.save(model, tmp_path / "b")
    (part,) = rc.inspect(tmp_path / "b").parts
    assert not part.pickle
    with pytest.raises(rc.DeserializationError) as info:
        rc.load(tmp_path / "b", allow_pickle=False)
    assert "TreePredictor" in str(info.value) and "functools.partial" not in str(info.value)
    back = rc.load(tmp_path / "b", allow_pickle=False, trusted=[TREE_PREDICTOR])
    np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))


def _partial_nodes(schema):
    stack, found = [schema], []
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("__module__") == "functools" and node.get("__class__") == "partial":
                found.append(node)
            stack.extend(node.values())
    return found


@pytest.mark.parametrize("change", ["func", "args"])
def test_a_partial_of_anything_else_stays_untrusted(tmp_path, change):
    marker = tmp_path / "pwned"
    model = _fit_from_dtype(_frame(), max_iter=3)
    rc.save(model, tmp_path / "b")

    def edit(schema):
        for node in _partial_nodes(schema):
            if change == "func":
                node["content"]["func"].update({"__module__": "os", "__class__": "system"})
            else:
                node["content"]["args"]["content"] = [_json_node(f"touch {marker}")]

    _rewrite_skops(tmp_path / "b", edit)
    with pytest.raises(rc.DeserializationError, match=r"not trusted: .*functools\.partial"):
        rc.load(tmp_path / "b", allow_pickle=False, trusted=[TREE_PREDICTOR])
    assert not marker.exists()


def test_a_lambda_falls_back_to_pickle_at_encode_time():
    pipe = make_pipeline(FunctionTransformer(lambda x: x * 2), LogisticRegression()).fit(X, y)
    data = rc.dumps(pipe)
    (part,) = rc.inspect(data).parts
    assert part.pickle and part.meta["format"] == "pickle"
    assert "<lambda>" in part.meta["why_pickle"]
    with pytest.raises(rc.DeserializationError, match=r"allow_pickle=False"):
        rc.loads(data, allow_pickle=False)
    np.testing.assert_array_equal(rc.loads(data).predict_proba(X), pipe.predict_proba(X))


def test_a_local_function_falls_back_to_pickle_at_encode_time():
    def triple(x):
        return x * 3

    pipe = make_pipeline(FunctionTransformer(triple), StandardScaler()).fit(X)
    data = rc.dumps(pipe)
    (part,) = rc.inspect(data).parts
    assert part.pickle and "triple" in part.meta["why_pickle"]
    np.testing.assert_array_equal(rc.loads(data).transform(X), pipe.transform(X))


def _double(x):
    return x * 2


def test_a_local_function_named_like_a_module_function_is_not_swapped():
    """skops stores a function as module.name: a local `_double` would come back as this
    module's `_double`. It is pickled instead."""

    def _double(x):
        return x * 20

    pipe = make_pipeline(FunctionTransformer(_double), StandardScaler()).fit(X)
    data = rc.dumps(pipe)
    (part,) = rc.inspect(data).parts
    assert part.pickle and "<locals>" in part.meta["why_pickle"]
    back = rc.loads(data)
    assert back.steps[0][1].func(1) == 20


def test_skops_parts_are_compressed():
    skops_io = pytest.importorskip("skops.io")
    pd = pytest.importorskip("pandas")
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {"a": X[:, 0], "b": X[:, 1], "c": np.array(list("xyz"))[np.arange(120) % 3]}
    )
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["c"]), (StandardScaler(), ["a", "b"])),
        LogisticRegression(),
    ).fit(frame, y)
    (part,) = rc.inspect(rc.dumps(pipe)).parts
    assert part.meta["format"] == "skops"
    stored = len(skops_io.dumps(pipe))
    assert part.size < stored / 3, (part.size, stored)


def test_returning_a_model_does_not_import_torch_or_dask():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import remote_codecs as rc\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X = np.arange(40.0).reshape(20, 2); y = np.arange(20) % 2\n"
        "back = rc.loads(rc.dumps(LogisticRegression().fit(X, y)), allow_pickle=False)\n"
        "assert (back.predict(X) == LogisticRegression().fit(X, y).predict(X)).all()\n"
        "print(sorted(m for m in ('torch', 'dask', 'cupy', 'jax') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=240
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
