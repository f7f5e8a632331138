"""A conformance kit for codec authors.

    from remote_codecs.testing import check_codec, codec_checks

    # one call that runs every check (raises AssertionError naming the failed one)
    check_codec(MyCodec, [sample1, sample2], equal=my_equal, registration_module="my_pkg",
                library="mylib")

    # or one pytest test per check
    @pytest.mark.parametrize("check", codec_checks())
    def test_my_codec(check, tmp_path):
        check(MyCodec, SAMPLES, equal=my_equal, tmp_path=tmp_path)

The checks: round trip through ``dumps``/``loads`` and through ``save``/``load`` (a
folder), the manifest naming the codec's id and version, decoding by id, ``allow_pickle``
behaving as the codec declares (``Codec.needs_pickle``), a clear error for a format
version from the future, a declared version policy that the loader applies, hostile
metadata never importing or calling what it names, importing the registration module
without importing the codec's library, and refusing a second registration of the same id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .api import dumps, load, loads, save
from .codec import Codec
from .errors import DeserializationError
from .registry import Registry

__all__ = ["check_codec", "codec_checks"]

Check = Callable[..., None]


def _instance(codec: Codec | type[Codec]) -> Codec:
    return codec() if isinstance(codec, type) else codec


def _registry(codec: Codec) -> Registry:
    registry = Registry(entry_points=False)
    registry.register(codec, replace=True)
    return registry


def _same(a: Any, b: Any, equal: Callable[[Any, Any], bool] | None) -> bool:
    if equal is not None:
        return bool(equal(a, b))
    result = a == b
    return (
        bool(result) if isinstance(result, bool) else bool(getattr(result, "all", lambda: result)())
    )


def _needs_pickle(codec: Codec) -> bool:
    return bool(getattr(codec, "needs_pickle", False))


def check_round_trip_bytes(
    codec: Codec | type[Codec],
    samples: Iterable[Any],
    *,
    equal: Callable[[Any, Any], bool] | None = None,
    **_: Any,
) -> None:
    """Every sample survives ``dumps``/``loads``, alone and inside a structure."""
    c = _instance(codec)
    registry = _registry(c)
    for i, sample in enumerate(samples):
        pairs: list[tuple[Any, Callable[[Any], Any]]] = [
            (sample, lambda v: v),
            ({"nested": [sample]}, lambda v: v["nested"][0]),
        ]
        for value, pick in pairs:
            back = pick(loads(dumps(value, registry=registry), registry=registry))
            assert _same(back, sample, equal), (
                f"{c.id}: sample {i} changed through dumps/loads: {back!r}"
            )


def check_round_trip_folder(
    codec: Codec | type[Codec],
    samples: Iterable[Any],
    *,
    equal: Callable[[Any, Any], bool] | None = None,
    tmp_path: Path | None = None,
    **_: Any,
) -> None:
    """Every sample survives ``save``/``load`` through a bundle folder."""
    c = _instance(codec)
    registry = _registry(c)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp_path or tmp)
        for i, sample in enumerate(samples):
            folder = root / f"roundtrip-{i}"
            save(sample, folder, registry=registry)
            back = load(folder, registry=registry)
            assert _same(back, sample, equal), (
                f"{c.id}: sample {i} changed through save/load: {back!r}"
            )


def check_manifest(codec: Codec | type[Codec], samples: Iterable[Any], **_: Any) -> None:
    """The manifest names the codec's id and format version for each sample."""
    from .api import inspect

    c = _instance(codec)
    registry = _registry(c)
    for i, sample in enumerate(samples):
        parts = inspect(dumps(sample, registry=registry)).parts
        assert any(p.codec == c.id and p.codec_version == c.version for p in parts), (
            f"{c.id}: sample {i} was not encoded by this codec (parts: {[p.codec for p in parts]}); "
            "check its `types` and `can_encode`"
        )


def check_decode_by_id(codec: Codec | type[Codec], samples: Iterable[Any], **_: Any) -> None:
    """Decoding finds the codec by the id in the manifest, not by guessing; an unknown
    id is a clear error."""
    c = _instance(codec)
    registry = _registry(c)
    assert registry.get(c.id) is c
    sample = next(iter(samples))
    data = dumps(sample, registry=registry)
    other = Registry(builtins=True, entry_points=False)
    if c.id not in other.ids():
        try:
            loads(data, registry=other)
        except DeserializationError as exc:
            assert c.id in str(exc), f"the error for an unknown codec must name it: {exc}"
        else:
            raise AssertionError(f"{c.id}: a registry without the codec decoded its data")


def check_safe_mode(
    codec: Codec | type[Codec],
    samples: Iterable[Any],
    *,
    equal: Callable[[Any, Any], bool] | None = None,
    **_: Any,
) -> None:
    """``allow_pickle=False`` loads the samples, unless the codec declares ``needs_pickle``
    (then it refuses them cleanly)."""
    c = _instance(codec)
    registry = _registry(c)
    for i, sample in enumerate(samples):
        data = dumps(sample, registry=registry)
        if _needs_pickle(c):
            try:
                loads(data, registry=registry, allow_pickle=False)
            except DeserializationError:
                continue
            raise AssertionError(
                f"{c.id} declares needs_pickle, but sample {i} loaded with allow_pickle=False"
            )
        back = loads(data, registry=registry, allow_pickle=False)
        assert _same(back, sample, equal), (
            f"{c.id}: sample {i} changed when loaded with allow_pickle=False"
        )


def check_future_version(codec: Codec | type[Codec], samples: Iterable[Any], **_: Any) -> None:
    """A part written by a newer format version of the codec is a clear error."""
    c = _instance(codec)
    registry = _registry(c)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "b"
        save(next(iter(samples)), folder, registry=registry)
        manifest = json.loads((folder / "manifest.json").read_text())
        for part in manifest["parts"]:
            if part["codec"] == c.id:
                part["codec_version"] = c.version + 1
        (folder / "manifest.json").write_text(json.dumps(manifest))
        try:
            load(folder, registry=registry)
        except DeserializationError as exc:
            assert f"v{c.version + 1}" in str(exc) and "upgrade" in str(exc).lower(), str(exc)
            return
        raise AssertionError(
            f"{c.id}: a part from format v{c.version + 1} was decoded by v{c.version}"
        )


def check_version_policy(codec: Codec | type[Codec], samples: Iterable[Any], **_: Any) -> None:
    """The codec declares its version policy, and the loader applies it: a part written
    under a far newer version of its library is refused naming both versions (unless the
    policy is "stable"), and loads with ``allow_version_mismatch=True``, warned about once,
    by the loader (the codec does not decide the version again: it reads
    ``reader.version_mismatch``)."""
    from .bundle import POLICIES

    c = _instance(codec)
    declared = any("version_policy" in vars(k) for k in type(c).__mro__ if k is not Codec)
    assert declared, f"{c.id}: the codec does not declare version_policy (one of {POLICIES})"
    assert c.version_policy in POLICIES, f"{c.id}: unknown version_policy {c.version_policy!r}"
    if not c.library:
        return
    registry = _registry(c)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "b"
        save(next(iter(samples)), folder, registry=registry)
        manifest = json.loads((folder / "manifest.json").read_text())
        if c.library not in manifest["producer"].get("libraries", {}):
            raise AssertionError(f"{c.id}: the manifest does not record {c.library}'s version")
        manifest["producer"]["libraries"][c.library] = "9999.0.0"
        (folder / "manifest.json").write_text(json.dumps(manifest))
        if c.version_policy == "stable":
            load(folder, registry=registry)
            return
        try:
            load(folder, registry=registry)
        except DeserializationError as exc:
            assert "9999.0.0" in str(exc) and "allow_version_mismatch" in str(exc), str(exc)
        else:
            raise AssertionError(f"{c.id}: a part from {c.library} 9999.0.0 loaded silently")
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load(folder, registry=registry, allow_version_mismatch=True)
        about = [str(w.message) for w in caught if "9999.0.0" in str(w.message)]
        assert len(about) == 1, (
            f"{c.id}: loading a part from {c.library} 9999.0.0 with "
            f"allow_version_mismatch=True warned {len(about)} times about the version, not "
            "once (the loader decides and warns; decode must not check the version again): "
            f"{about}"
        )


_PROBE = "remote_codecs_hostile_probe"
_HOSTILE: list[Any] = [
    f"{_PROBE}:run",
    f"{_PROBE}.Evil",
    "subprocess:run",
    "os.system",
    {"class": f"{_PROBE}:Evil", "params": {"args": ["touch", "x"]}},
    [f"{_PROBE}:run", -1],
    -1,
    2**70,
    1e308,
    None,
    True,
    "",
    [],
    {},
]


class _ImportProbe:
    """A meta path finder that records attempts to import the probe module."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] == _PROBE:
            self.attempts.append(name)
        return None


def check_hostile_meta(codec: Codec | type[Codec], samples: Iterable[Any], **_: Any) -> None:
    """A manifest whose metadata for this codec was written by an attacker never makes the
    codec import or call what it names: loading raises DeserializationError (or, where
    the value is harmless, loads), never another exception."""
    c = _instance(codec)
    registry = _registry(c)
    probe = _ImportProbe()
    sys.meta_path.insert(0, probe)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "b"
            save(next(iter(samples)), folder, registry=registry)
            original = (folder / "manifest.json").read_text()
            manifest = json.loads(original)
            metas = [p.get("meta") or {} for p in manifest["parts"] if p["codec"] == c.id]
            keys = sorted({k for m in metas for k in m}) or ["class"]
            variants: list[dict[str, Any] | tuple[str, Any]] = [
                {},
                {"class": f"{_PROBE}:Evil"},
                *((key, value) for key in keys for value in _HOSTILE),
            ]
            for change in variants:
                edited = json.loads(original)
                for part in edited["parts"]:
                    if part["codec"] == c.id:
                        if isinstance(change, dict):
                            part["meta"] = change
                        else:
                            part["meta"] = {**(part.get("meta") or {}), change[0]: change[1]}
                (folder / "manifest.json").write_text(json.dumps(edited))
                try:
                    load(folder, registry=registry, allow_pickle=False)
                except DeserializationError:
                    pass
                except Exception as exc:
                    raise AssertionError(
                        f"{c.id}: hostile meta {edited['parts'][0].get('meta')!r} raised "
                        f"{type(exc).__name__}: {exc}, not DeserializationError"
                    ) from exc
                assert not probe.attempts, (
                    f"{c.id}: hostile meta made the codec import {probe.attempts[0]!r}"
                )
    finally:
        sys.meta_path.remove(probe)


def check_lazy_import(
    codec: Codec | type[Codec],
    samples: Iterable[Any],
    *,
    registration_module: str | None = None,
    library: str | None = None,
    **_: Any,
) -> None:
    """Importing the module that registers the codec does not import its library."""
    c = _instance(codec)
    module = registration_module or "remote_codecs"
    lib = library or (c.library or "").replace("-", "_")
    if not lib:
        return
    code = f"import sys, {module}; import remote_codecs as rc; rc.default_registry().ids(); print({lib!r} in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", (
        f"importing {module} (and loading the codec plugins) imported {lib}"
    )


def check_duplicate_id(codec: Codec | type[Codec], samples: Iterable[Any], **_: Any) -> None:
    """Registering a second codec with the same id is refused unless replace=True."""
    c = _instance(codec)
    registry = _registry(c)
    try:
        registry.register(type(c)())
    except ValueError as exc:
        assert "already registered" in str(exc)
    else:
        raise AssertionError(f"{c.id}: a second registration of the same id was accepted")
    registry.register(type(c)(), replace=True)


_CHECKS: list[Check] = [
    check_round_trip_bytes,
    check_round_trip_folder,
    check_manifest,
    check_decode_by_id,
    check_safe_mode,
    check_future_version,
    check_version_policy,
    check_hostile_meta,
    check_lazy_import,
    check_duplicate_id,
]


def codec_checks() -> list[Check]:
    """Every check, for ``pytest.mark.parametrize("check", codec_checks())``."""
    return list(_CHECKS)


def check_codec(
    codec: Codec | type[Codec],
    samples: Iterable[Any],
    *,
    equal: Callable[[Any, Any], bool] | None = None,
    registration_module: str | None = None,
    library: str | None = None,
) -> None:
    """Run every check on ``codec`` with ``samples`` (compared with ``equal``, or ``==``)."""
    samples = list(samples)
    if not samples:
        raise ValueError("give at least one sample value")
    for check in _CHECKS:
        check(codec, samples, equal=equal, registration_module=registration_module, library=library)
