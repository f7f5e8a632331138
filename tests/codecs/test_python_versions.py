"""Code pickled by value under one Python minor version is refused under another, before
anything is unpickled (running it could crash the interpreter); plain data still loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import remote_codecs as rc

HERE_MINOR = "{}.{}".format(*sys.version_info[:2])
OTHER = "3.99.1"


def _as_if_written_by(folder, python: str) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["producer"]["python"] = python
    path.write_text(json.dumps(manifest))


def _lambda_holder():
    scale = 3
    return {"f": lambda x: x * scale, "data": np.arange(4)}


class Local:  # defined in a test module: pickled by reference, not by value
    pass


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: lambda x: x + 1, id="lambda"),
        pytest.param(_lambda_holder, id="closure-in-dict"),
        pytest.param(lambda: type("Dyn", (), {"m": lambda self: 1}), id="class-by-value"),
    ],
)
def test_code_from_another_minor_is_refused_naming_both(tmp_path, value):
    rc.save(value(), tmp_path / "b")
    _as_if_written_by(tmp_path / "b", OTHER)
    with pytest.raises(rc.DeserializationError) as info:
        rc.load(tmp_path / "b")
    message = str(info.value)
    assert "3.99" in message and HERE_MINOR in message and "pickled by value" in message


def test_same_minor_other_patch_loads(tmp_path):
    rc.save(lambda x: x + 1, tmp_path / "b")
    _as_if_written_by(tmp_path / "b", f"{HERE_MINOR}.99")
    assert rc.load(tmp_path / "b")(1) == 2


def test_plain_data_from_another_minor_loads(tmp_path):
    value = {"a": np.arange(3), "b": [1.5, "x"], "c": Local.__name__}
    rc.save(value, tmp_path / "b")
    _as_if_written_by(tmp_path / "b", OTHER)
    back = rc.load(tmp_path / "b", allow_pickle=False)
    assert back["b"] == [1.5, "x"] and (back["a"] == np.arange(3)).all()


def test_refused_before_unpickling(tmp_path):
    marker = tmp_path / "marker"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    rc.save({"f": lambda: 1, "p": Planted()}, tmp_path / "b")
    _as_if_written_by(tmp_path / "b", OTHER)
    with pytest.raises(rc.DeserializationError):
        rc.load(tmp_path / "b")
    assert not marker.exists()


COMPAT = os.environ.get("REMOTE_RUNTIME_COMPAT_PYTHON")


@pytest.mark.skipif(not COMPAT, reason="no interpreter of another minor (make compat sets one)")
def test_real_interpreter_of_another_minor(tmp_path):
    """A lambda written here is refused by a real interpreter of another minor version."""
    rc.save({"f": lambda x: x + 1}, tmp_path / "b")
    src = os.path.join(os.path.dirname(rc.__file__), "..")
    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {os.path.abspath(src)!r})
        import remote_codecs as rc
        try:
            rc.load({str(tmp_path / "b")!r})
        except rc.DeserializationError as exc:
            print("REFUSED", exc)
        else:
            print("LOADED")
        """
    )
    out = subprocess.run([COMPAT, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("REFUSED"), out.stdout + out.stderr
    assert HERE_MINOR in out.stdout
