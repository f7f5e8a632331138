"""The registry: lazy by type name along the MRO, ids unique, plugins by entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import remote_codecs as rc


class Celsius:
    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return type(other) is type(self) and other.v == self.v


class Kelvin(Celsius):
    pass


class CelsiusCodec(rc.Codec):
    id = "test.Celsius/text"
    version = 2
    types = (rc.type_name(Celsius),)

    def encode(self, obj, writer):
        writer.write(".txt", str(obj.v).encode())
        return {"cls": type(obj).__name__}

    def decode(self, reader, meta, version):
        cls = {"Celsius": Celsius, "Kelvin": Kelvin}[meta["cls"]]
        return cls(float(reader.read(".txt")))


def test_register_and_round_trip_subclass_via_mro():
    reg = rc.Registry(entry_points=False)
    reg.register(CelsiusCodec)
    data = rc.dumps([Celsius(1.5), Kelvin(3.0)], registry=reg)
    m = rc.inspect(data)
    assert m.skeleton_kind == "json"
    assert [(p.codec, p.codec_version) for p in m.parts] == [("test.Celsius/text", 2)] * 2
    assert rc.loads(data, registry=reg, allow_pickle=False) == [Celsius(1.5), Kelvin(3.0)]


def test_duplicate_id_refused_unless_replace():
    reg = rc.Registry(entry_points=False)
    reg.register(CelsiusCodec)
    with pytest.raises(ValueError, match="already registered.*replace=True"):
        reg.register(CelsiusCodec)
    reg.register(CelsiusCodec, replace=True)
    with pytest.raises(ValueError, match="already registered"):
        reg.register_lazy("numpy.ndarray/npy", "x:y", ["numpy.ndarray"])


def test_unregister_falls_back_to_pickle():
    reg = rc.Registry(entry_points=False)
    reg.register(CelsiusCodec)
    reg.unregister(CelsiusCodec.id)
    data = rc.dumps(Celsius(1), registry=reg)
    assert rc.inspect(data).skeleton_kind == "pickle"
    with pytest.raises(rc.DeserializationError, match="unknown codec"):
        reg.get(CelsiusCodec.id)


def test_invalid_codecs_are_refused():
    class NoTypes(rc.Codec):
        id = "x/none"

        def encode(self, obj, writer):
            return None

        def decode(self, reader, meta, version):
            return None

    with pytest.raises(TypeError, match="names no type"):
        rc.Registry(entry_points=False).register(NoTypes)
    with pytest.raises(TypeError, match="Codec"):
        rc.Registry(entry_points=False).register(object())  # type: ignore[arg-type]


def test_codec_metadata_must_be_json():
    class BadMeta(CelsiusCodec):
        id = "test.Celsius/bad"

        def encode(self, obj, writer):
            return {"x": object()}

    reg = rc.Registry(entry_points=False)
    reg.register(BadMeta)
    with pytest.raises(rc.SerializationError, match="not plain JSON"):
        rc.dumps(Celsius(1), registry=reg)


def test_codec_failure_names_the_path():
    class Broken(CelsiusCodec):
        id = "test.Celsius/broken"

        def encode(self, obj, writer):
            raise RuntimeError("boom")

    reg = rc.Registry(entry_points=False)
    reg.register(Broken)
    with pytest.raises(
        rc.SerializationError, match=r"value\['t'\]\[1\]: codec 'test.Celsius/broken'.*boom"
    ):
        rc.dumps({"t": [0, Celsius(1)]}, registry=reg)


def test_builtin_table_matches_codec_classes():
    import importlib

    from remote_codecs.codecs import BUILTIN_CODECS

    checked = 0
    for codec_id, target, types in BUILTIN_CODECS:
        module, _, name = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            # only a codec whose library is not installed here (torch ... under make compat)
            assert exc.name and not exc.name.startswith("remote_codecs"), exc
            continue
        assert cls.id == codec_id and tuple(cls.types) == tuple(types)
        checked += 1
    assert checked >= len(BUILTIN_CODECS) // 2


def _run(code: str, *paths: str) -> subprocess.CompletedProcess[str]:
    env_path = ":".join([*paths, *sys.path])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": ""},
        timeout=60,
    )


def test_importing_the_packages_imports_no_heavy_library():
    out = _run(
        """
        import sys, remote_codecs, remote_runtime
        heavy = ["numpy", "pandas", "pyarrow", "torch", "tensorflow", "keras", "xgboost",
                 "sklearn", "s3fs", "ray", "dask", "scipy", "fsspec"]
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_encoding_plain_values_imports_no_codec_library():
    out = _run(
        """
        import sys, remote_codecs as rc
        rc.loads(rc.dumps({"a": [1, 2.5, b"x", (None,)]}))
        print("numpy" in sys.modules)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _fake_plugin(tmp_path, module_code: str, target: str) -> str:
    site = tmp_path / "site"
    dist = site / "fakeplugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[remote_codecs.codecs]\nfake = {target}\n")
    (site / "fakeplugin.py").write_text(textwrap.dedent(module_code))
    return str(site)


PLUGIN = """
import remote_codecs as rc

class Thing:
    def __init__(self, v):
        self.v = v

class ThingCodec(rc.Codec):
    id = "fakeplugin.Thing/v"
    types = ("fakeplugin.Thing",)

    def encode(self, obj, writer):
        return {"v": obj.v}

    def decode(self, reader, meta, version):
        return Thing(meta["v"])
"""


def test_entry_point_plugin_is_loaded(tmp_path):
    site = _fake_plugin(tmp_path, PLUGIN, "fakeplugin:ThingCodec")
    out = _run(
        """
        import remote_codecs as rc, fakeplugin
        data = rc.dumps(fakeplugin.Thing(7))
        part = rc.inspect(data).parts[0]
        print(part.codec, part.provider, rc.loads(data, allow_pickle=False).v)
        """,
        site,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fakeplugin.Thing/v", "fakeplugin", "7"]


def test_broken_plugin_warns_and_others_still_work(tmp_path):
    site = _fake_plugin(tmp_path, "raise ImportError('needs libfoo')", "fakeplugin:ThingCodec")
    out = _run(
        """
        import warnings, remote_codecs as rc, numpy as np
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            back = rc.loads(rc.dumps(np.arange(3)))
        print(back.tolist())
        print(w[0].message)
        """,
        site,
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first == "[0, 1, 2]"
    assert "fakeplugin" in second and "needs libfoo" in second and "uninstall" in second


def test_duplicate_id_plugin_warns(tmp_path):
    code = PLUGIN.replace('id = "fakeplugin.Thing/v"', 'id = "numpy.ndarray/npy"')
    site = _fake_plugin(tmp_path, code, "fakeplugin:ThingCodec")
    out = _run(
        """
        import warnings, remote_codecs as rc
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            rc.default_registry().ids()
        print(w[0].message)
        """,
        site,
    )
    assert out.returncode == 0, out.stderr
    assert "already registered" in out.stdout and "fakeplugin" in out.stdout


def test_versions_agree():
    from importlib.metadata import version

    import remote_runtime

    assert rc.__version__ == remote_runtime.__version__ == version("remote-runtime")
