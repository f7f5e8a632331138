"""@remote end to end on the local backend: the seed's semantics, exceptions, logs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import remote_runtime
from remote_runtime import RemoteFunctionError, SerializationError, remote
from servers import status_record


def matrix_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b)


def divide(x, y):
    return x / y


def test_matrix_multiply_example(job_root):
    mm = remote(instance_type="ml.m5.large")(matrix_multiply)
    a = np.array([[1, 0], [0, 1]])
    b = np.array([1, 2])
    assert np.array_equal(mm(a, b), np.array([1, 2]))
    (job,) = job_root.iterdir()
    assert re.fullmatch(r"matrix-multiply-\d{8}-\d{9}-[0-9a-z]{4}", job.name)
    assert sorted(p.name for p in job.iterdir()) == [
        "arguments.bundle",
        "function.bundle",
        "job.json",
        "logs",
        "results.bundle",
        "status.json",
    ]
    spec = json.loads((job / "job.json").read_text())
    assert spec["settings"]["instance_type"] == "ml.m5.large"
    assert status_record(job)["state"] == "Completed"


def test_divide_value_and_exception():
    d = remote(divide)
    assert d(10, 5) == 2
    with pytest.raises(ZeroDivisionError) as info:
        d(10, 0)
    assert "Remote traceback" in "".join(getattr(info.value, "__notes__", []))
    assert "x / y" in info.value.remote_traceback


shared: list = []


def mutate(items, mapping):
    shared.append("job")
    items.append(4)
    mapping["new"] = True
    return items, mapping


def test_arguments_are_copies():
    items, mapping = [1, 2, 3], {"a": 1}
    result = remote(mutate)(items, mapping)
    assert items == [1, 2, 3] and mapping == {"a": 1} and shared == []
    items, mapping = result
    assert items == [1, 2, 3, 4] and mapping == {"a": 1, "new": True}


def test_dmatrix_is_refused_before_any_job(job_root):
    xgb = pytest.importorskip("xgboost")
    dtrain = xgb.DMatrix(np.ones((4, 2)), label=np.arange(4))

    def train(params, data):
        return 1

    with pytest.raises(
        SerializationError, match=r"args\[1\]\['train'\].*DMatrix.*inside the function"
    ):
        remote(train)({"eta": 0.1}, {"train": dtrain})
    assert not job_root.exists() or not list(job_root.iterdir())


def test_unknown_setting_and_wrong_arguments_fail_before_a_job(job_root):
    with pytest.raises(
        TypeError, match="unexpected keyword argument 'max_runtime'.*max_runtime_in_seconds"
    ):
        remote(max_runtime=3)
    d = remote(divide)
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        d(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        d(1, 2, z=3)
    assert not job_root.exists() or not list(job_root.iterdir())


class CustomError(Exception):
    pass


def chained():
    try:
        {}["missing"]
    except KeyError as exc:
        raise CustomError("wrapped") from exc


def implicit():
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        raise ValueError("during handling")


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def raise_needs_two():
    raise NeedsTwo(1, 2)


def test_exception_chain_is_kept():
    with pytest.raises(CustomError, match="wrapped") as info:
        remote(chained)()
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(ValueError, match="during handling") as info:
        remote(implicit)()
    assert isinstance(info.value.__context__, ZeroDivisionError)
    assert info.value.__cause__ is None


def test_exception_with_its_own_init_is_rebuilt_without_calling_it():
    with pytest.raises(NeedsTwo) as info:
        remote(raise_needs_two)()
    assert info.value.args == ("1-2",)
    assert "raise NeedsTwo(1, 2)" in info.value.remote_traceback


def raise_ghost():
    import importlib

    with open("nowhere_to_be_found.py", "w") as f:  # a module only the job has
        f.write("class Ghost(Exception):\n    pass\n")
    importlib.invalidate_caches()
    raise importlib.import_module("nowhere_to_be_found").Ghost("boo")


def test_unrebuildable_exception_becomes_remote_function_error_saying_why():
    with pytest.raises(RemoteFunctionError) as info:
        remote(raise_ghost)()
    err = info.value
    assert err.type_name == "nowhere_to_be_found.Ghost" and err.message == "boo"
    assert "nowhere_to_be_found" in err.reason and "cannot be imported" in err.reason
    assert "raise_ghost" in err.remote_traceback


def test_exception_class_defined_in_main(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
        from remote_runtime import remote

        class MainError(Exception):
            pass

        @remote
        def fail():
            raise MainError("from main")

        try:
            fail()
        except MainError as exc:
            print("caught", type(exc).__name__, exc)
        """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "caught MainError from main" in out.stdout


def chatty(n):
    print("to stdout", n)
    print("to stderr", n, file=sys.stderr)
    return n


def test_logs_are_saved_and_streamed(job_root, capfd):
    assert remote(chatty)(7) == 7
    out, err = capfd.readouterr()
    (job,) = job_root.iterdir()
    assert f"[{job.name}] to stdout 7" in out
    assert f"[{job.name}] to stderr 7" in err
    assert "to stdout 7" in (job / "logs" / "stdout.log").read_text()
    assert "to stderr 7" in (job / "logs" / "stderr.log").read_text()
    assert remote(stream_logs=False)(chatty)(8) == 8
    out, err = capfd.readouterr()
    assert "to stdout 8" not in out


def test_job_json_holds_no_key(job_root, tmp_path):
    remote(divide)(1, 1)
    (job,) = job_root.iterdir()
    from remote_runtime.client import recall_key

    key = recall_key(job.name)
    client_key = tmp_path / "cache" / "remote-runtime" / "client.key"
    assert oct(client_key.stat().st_mode & 0o777) == "0o600"
    for path in job.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key not in data and key.hex().encode() not in data
            assert client_key.read_bytes() not in data


def test_package_exports():
    assert remote_runtime.remote is remote
    assert "RemoteFunctionError" in dir(remote_runtime)


def double_frame(df):
    import polars as pl

    return df.with_columns((pl.col("a") * 2).alias("a2"))


def test_polars_dataframe_through_remote_and_back(job_root):
    pl = pytest.importorskip("polars")
    pytest.importorskip("remote_codecs_polars")
    df = pl.DataFrame({"a": [1, 2, 3], "c": pl.Series(["x", "y", "x"], dtype=pl.Categorical)})
    out = remote(stream_logs=False)(double_frame)(df)
    assert out["a2"].to_list() == [2, 4, 6] and out.schema["c"] == pl.Categorical
    (job,) = job_root.iterdir()
    import remote_codecs as rc

    for role in ("arguments", "results"):
        data = (job / f"{role}.bundle").read_bytes()
        assert [p.codec for p in rc.inspect(data).parts] == ["polars.DataFrame/arrow"]


def _refit(model, n_estimators):
    from sklearn.ensemble import RandomForestClassifier

    X = np.random.RandomState(1).rand(40, 3)
    fresh = RandomForestClassifier(n_estimators=n_estimators, random_state=0)
    return fresh.fit(X, model.predict(X))


def test_tree_models_travel_both_ways():
    """Tree models hold scikit-learn internals that skops trusts only from a trusted
    producer: a job's bundles, verified with its key, are one."""
    from sklearn.ensemble import RandomForestClassifier

    X = np.random.RandomState(0).rand(50, 3)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, X[:, 0] > 0.5)
    back = remote(stream_logs=False)(_refit)(model, 4)
    assert type(back) is RandomForestClassifier and len(back.estimators_) == 4
    np.testing.assert_array_equal(back.predict(X), _refit(model, 4).predict(X))
