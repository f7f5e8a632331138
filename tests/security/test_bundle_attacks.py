"""Attacks on bundles by someone who can write them (or hand one over) but holds no key.

Written from the outside: README.md, the "Bundle format" part of docs/ARCHITECTURE.md and
the public API of ``remote_codecs``. Every attack must end in a DeserializationError (or
its subclass IntegrityError) naming the file and the reason, quickly, with nothing written
outside the bundle and no planted code run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from attacks import (
    Blocked,
    Box,
    bounded,
    digest,
    encode_manifest,
    evil_pickle,
    files_named,
    manifest_of,
    raw_zip,
    refusal,
    rename_part_file,
    same,
    unzip,
    zip_files,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remote_codecs as rc

pytestmark = pytest.mark.timeout(30)

KEY = b"the-owner's-key"
MiB = 1 << 20


def _array_bundle(folder: Path) -> bytes:
    """A folder bundle {"x": arange(4)}; returns the part's bytes."""
    rc.save({"x": np.arange(4)}, folder)
    return (folder / "0.npy").read_bytes()


def _edit_manifest(folder: Path, edit) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m))


# --------------------------------------------------------------------------- path traversal

TRAVERSAL = [
    "../../x/victim",
    "{abs}",
    "a/b",
    "..",
    ".",
    "",
    "0\x00.npy",
    "0.npy\nvictim",
    "..\\..\\victim",
    "victim/",
    "./0.npy",
]


def _bad_name(name: str, tmp_path: Path) -> str:
    return name.replace("{abs}", str(tmp_path / "abs" / "victim"))


@pytest.mark.parametrize("name", TRAVERSAL)
def test_folder_part_name_outside_the_bundle_is_refused(tmp_path, name):
    bundle = tmp_path / "deep" / "a" / "b" / "bundle"
    part = _array_bundle(bundle)
    name = _bad_name(name, tmp_path)
    # plant the right bytes where a naive loader would look, so that only the name check
    # stands between the attacker and a successful read from outside the bundle
    if "\x00" not in name and name not in ("", ".", ".."):
        target = bundle / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_dir():
                target.write_bytes(part)
        except OSError:
            pass
    _edit_manifest(bundle, lambda m: rename_part_file(m, name))
    refusal(lambda: rc.load(bundle, allow_pickle=False), repr(name)[1:-1], name, "manifest")


@pytest.mark.parametrize("name", TRAVERSAL)
def test_zip_part_name_outside_the_bundle_is_refused_and_nothing_is_written(
    tmp_path, private_tmp, name
):
    name = _bad_name(name, tmp_path)
    files = unzip(rc.dumps({"x": np.arange(4)}))
    m = manifest_of(files)
    rename_part_file(m, name)
    data = raw_zip([("manifest.json", encode_manifest(m)), (name, files["0.npy"])])
    refusal(lambda: rc.loads(data, allow_pickle=False), repr(name)[1:-1], name, "manifest")
    assert files_named(tmp_path, "victim") == []


@pytest.mark.parametrize(
    "name", ["../../x/victim", "{abs}", "../../../../../x/victim", "a/../../victim"]
)
def test_fsspec_part_name_outside_the_bundle_writes_nothing_while_prefetching(
    tmp_path, private_tmp, name
):
    import fsspec

    fs = fsspec.filesystem("memory")
    base = f"/sec-{uuid.uuid4().hex}/b"
    name = _bad_name(name, tmp_path)
    files = unzip(rc.dumps({"x": np.arange(4)}))
    m = manifest_of(files)
    rename_part_file(m, name)
    try:
        fs.pipe(f"{base}/manifest.json", encode_manifest(m))
        fs.pipe(f"{base}/{name}", files["0.npy"])  # wherever memory:// puts it
        refusal(lambda: rc.load(f"memory://{base}", allow_pickle=False), name, "manifest")
    finally:
        fs.rm(base.rsplit("/", 1)[0], recursive=True)
    assert files_named(tmp_path, "victim") == [], "the loader wrote a file outside the bundle"


def test_pickled_skeleton_named_outside_the_bundle_is_never_read(tmp_path, marker):
    bundle = tmp_path / "bundle"
    rc.save(Box("a", np.arange(3)), bundle)
    evil = evil_pickle(marker)
    (tmp_path / "outside.pkl").write_bytes(evil)

    def edit(m):
        m["skeleton"].update(file="../outside.pkl", size=len(evil), digest=digest(evil))

    _edit_manifest(bundle, edit)
    refusal(lambda: rc.load(bundle), "../outside.pkl", "manifest")


def test_zip_pickled_skeleton_named_outside_is_refused(tmp_path, marker):
    files = unzip(rc.dumps(Box("a", np.arange(3))))
    m = manifest_of(files)
    evil = evil_pickle(marker)
    m["skeleton"].update(file="../outside.pkl", size=len(evil), digest=digest(evil))
    data = raw_zip(
        [("manifest.json", encode_manifest(m)), ("0.npy", files["0.npy"]), ("../outside.pkl", evil)]
    )
    refusal(lambda: rc.loads(data), "../outside.pkl", "manifest")
    assert files_named(tmp_path, "outside") == []


# ---------------------------------------------------------------------- non-regular files


@pytest.mark.parametrize("which", ["0.npy", "manifest.json"])
def test_fifo_in_a_folder_bundle_fails_fast(tmp_path, which):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)
    (bundle / which).unlink()
    os.mkfifo(bundle / which)
    refusal(lambda: bounded(lambda: rc.load(bundle, allow_pickle=False), [bundle / which]), which)


def test_fifo_pickled_skeleton_fails_fast(tmp_path, marker):
    bundle = tmp_path / "bundle"
    rc.save(Box("a", np.arange(3)), bundle)
    (bundle / "skeleton.pkl").unlink()
    os.mkfifo(bundle / "skeleton.pkl")
    refusal(lambda: bounded(lambda: rc.load(bundle), [bundle / "skeleton.pkl"]), "skeleton.pkl")


@pytest.mark.parametrize("which", ["0.npy", "manifest.json"])
def test_symlink_to_a_file_outside_is_refused(tmp_path, which):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)
    outside = tmp_path / "outside-copy"
    shutil.copyfile(bundle / which, outside)  # same bytes: only the symlink check can refuse
    (bundle / which).unlink()
    (bundle / which).symlink_to(outside)
    refusal(lambda: bounded(lambda: rc.load(bundle, allow_pickle=False)), which)


def test_part_that_is_a_directory_is_refused(tmp_path):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)
    (bundle / "0.npy").unlink()
    (bundle / "0.npy").mkdir()
    refusal(lambda: rc.load(bundle, allow_pickle=False), "0.npy")


# ------------------------------------------------------------------------ memory blow-ups


def _peak_during(fn) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            fn()
            err = None
        except BaseException as e:
            err = e
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return err, peak


def _assert_refused_cheaply(fn, limit: int, *names: str) -> None:
    err, peak = _peak_during(fn)
    assert err is not None, "the hostile bundle loaded"
    refusal(lambda: (_ for _ in ()).throw(err), *names)
    assert peak < limit, f"refusing it allocated {peak / MiB:.1f} MiB (limit {limit / MiB:.0f} MiB)"


def test_manifest_declaring_a_64_mib_part_fails_before_allocating():
    files = unzip(rc.dumps({"x": np.arange(4)}))
    m = manifest_of(files)
    m["parts"][0]["files"][0]["size"] = 64 * MiB
    m["parts"][0]["meta"]["shape"] = [8 * MiB]
    data = raw_zip([("manifest.json", encode_manifest(m)), ("0.npy", files["0.npy"])])
    assert len(data) < 2000
    _assert_refused_cheaply(lambda: rc.loads(data, allow_pickle=False), 16 * MiB, "0.npy")


def test_zip_entry_forging_a_64_mib_size_fails_before_allocating():
    files = unzip(rc.dumps({"x": np.arange(4)}))
    m = manifest_of(files)
    m["parts"][0]["files"][0]["size"] = 64 * MiB
    m["parts"][0]["meta"]["shape"] = [8 * MiB]
    data = raw_zip([("manifest.json", encode_manifest(m)), ("0.npy", files["0.npy"], 64 * MiB)])
    _assert_refused_cheaply(lambda: rc.loads(data, allow_pickle=False), 16 * MiB, "0.npy")


def test_folder_part_declared_64_mib_but_short_fails_before_allocating(tmp_path):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)

    def edit(m):
        m["parts"][0]["files"][0]["size"] = 64 * MiB
        m["parts"][0]["meta"]["shape"] = [8 * MiB]

    _edit_manifest(bundle, edit)
    _assert_refused_cheaply(lambda: rc.load(bundle, allow_pickle=False), 16 * MiB, "0.npy")


def test_deflated_manifest_bomb_is_refused_cheaply():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        info = zipfile.ZipInfo("manifest.json")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as w:
            w.write(b'{"format": 1, "pad": "')
            chunk = b" " * MiB
            for _ in range(128):
                w.write(chunk)
            w.write(b'"}')
    data = out.getvalue()
    assert len(data) < 200_000
    _assert_refused_cheaply(lambda: rc.loads(data, allow_pickle=False), 32 * MiB, "manifest")


def test_huge_sparse_manifest_file_is_refused_cheaply(tmp_path):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)
    with open(bundle / "manifest.json", "r+b") as f:
        f.truncate(128 * MiB)  # sparse: costs no disk
    _assert_refused_cheaply(lambda: rc.load(bundle, allow_pickle=False), 32 * MiB, "manifest")


DEPTH = 100_000
NESTINGS = {
    "lists": ("[" * DEPTH) + ("]" * DEPTH),
    "tuples": ('{"$tuple": [' * DEPTH) + "1" + ("]}" * DEPTH),
    "dicts": ('{"a": ' * DEPTH) + "1" + ("}" * DEPTH),
    "$dict": ('{"$dict": [[1, ' * DEPTH) + "1" + ("]]}" * DEPTH),
    "sets": ('{"$set": [' * DEPTH) + "1" + ("]}" * DEPTH),
}


def _with_raw_skeleton(value_json: str) -> bytes:
    files = unzip(rc.dumps({"x": np.arange(4)}))
    text = files["manifest.json"].decode()
    m = manifest_of(files)
    m["skeleton"]["value"] = "@@VALUE@@"
    text = json.dumps(m).replace('"@@VALUE@@"', value_json)
    return zip_files({"manifest.json": text.encode(), "0.npy": files["0.npy"]})


@pytest.mark.parametrize("kind", sorted(NESTINGS))
def test_deeply_nested_skeleton_is_a_deserialization_error(kind):
    data = _with_raw_skeleton(NESTINGS[kind])
    refusal(lambda: rc.loads(data, allow_pickle=False), "manifest")


def test_deeply_nested_part_meta_is_a_deserialization_error():
    files = unzip(rc.dumps({"x": np.arange(4)}))
    m = manifest_of(files)
    m["parts"][0]["meta"] = "@@META@@"
    text = json.dumps(m).replace('"@@META@@"', NESTINGS["dicts"])
    data = zip_files({"manifest.json": text.encode(), "0.npy": files["0.npy"]})
    refusal(lambda: rc.loads(data, allow_pickle=False), "manifest")


def test_deeply_nested_folder_manifest_is_a_deserialization_error(tmp_path):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)
    (bundle / "manifest.json").write_text(NESTINGS["lists"])
    refusal(lambda: rc.load(bundle, allow_pickle=False), "manifest")


# ---------------------------------------------------------------- malformed skeleton tags

# the tags of the brief: each must be a DeserializationError
BAD_TAGS = [
    {"$dict": 5},
    {"$complex": [1]},
    {"$bytes": "!!"},
    {"$float": "1e999x"},
    {"$part": "0"},
    {"$part": 99},
    {"$odict": 3},
    {"$set": [[1]]},
]
# more of the same: a DeserializationError, or read back as the plain dict they spell
MORE_TAGS = [
    {"$dict": [[1]]},
    {"$dict": [[[1], 2]]},
    {"$complex": "x"},
    {"$bytes": 5},
    {"$bytearray": 3},
    {"$float": 1.5},
    {"$part": -1},
    {"$part": None},
    {"$part": True},
    {"$frozenset": "ab"},
    {"$frozenset": [{"a": 1}]},
    {"$tuple": 5},
    {"$tuple": [1], "extra": 2},
]


@pytest.mark.parametrize("tag", BAD_TAGS + MORE_TAGS, ids=json.dumps)
def test_malformed_tag_in_an_unsigned_bundle_is_a_deserialization_error(tmp_path, tag):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)
    _edit_manifest(
        bundle, lambda m: m["skeleton"].__setitem__("value", {"x": {"$part": 0}, "y": tag})
    )
    try:
        value = rc.load(bundle, allow_pickle=False)
    except rc.DeserializationError as e:
        assert any(w in str(e) for w in ("manifest", "skeleton", "part", next(iter(tag)))), str(e)
        return
    except BaseException as e:
        pytest.fail(f"{json.dumps(tag)}: raw {type(e).__name__}: {e}")
    assert tag in MORE_TAGS, f"{json.dumps(tag)} loaded as {value['y']!r}"
    # the only acceptable success: the malformed tag read back as the plain dict it spells
    assert value["y"] == tag, f"{json.dumps(tag)} silently decoded as {value['y']!r}"


@pytest.mark.parametrize("tag", BAD_TAGS, ids=json.dumps)
def test_malformed_tag_in_a_signed_bundle_fails_its_signature_first(tmp_path, tag):
    bundle = tmp_path / "bundle"
    rc.save({"x": np.arange(4)}, bundle, key=KEY)
    _edit_manifest(
        bundle, lambda m: m["skeleton"].__setitem__("value", {"x": {"$part": 0}, "y": tag})
    )
    refusal(
        lambda: rc.load(bundle, key=KEY, allow_pickle=False),
        "manifest.json",
        "signature",
        error=rc.IntegrityError,
    )


def test_unsigned_bundle_is_refused_when_a_key_is_given(tmp_path):
    bundle = tmp_path / "bundle"
    _array_bundle(bundle)
    refusal(
        lambda: rc.load(bundle, key=KEY, allow_pickle=False),
        "signature",
        "signed",
        error=rc.IntegrityError,
    )


# ----------------------------------------------------------------------------- safe mode


def _needs_pickle_values():
    import decimal

    import pandas as pd

    values = {
        "custom class": Box("a", np.arange(3)),
        "object array": np.array([1, "a", None], dtype=object),
        "pandas object column": pd.DataFrame({"a": [decimal.Decimal(1), "x"]}),
        "dict holding a custom class": {"k": Box("b", 1)},
    }
    return values


@pytest.mark.parametrize("what", sorted(_needs_pickle_values()))
def test_bundle_needing_pickle_is_refused_in_safe_mode(what, marker):
    value = _needs_pickle_values()[what]
    data = rc.dumps(value)
    refusal(lambda: rc.loads(data, allow_pickle=False), "pickle")


def test_torch_module_structure_is_refused_in_safe_mode():
    torch = pytest.importorskip("torch")
    data = rc.dumps(torch.nn.Linear(2, 2))
    refusal(lambda: rc.loads(data, allow_pickle=False), "pickle")


def test_pickled_skeleton_with_planted_reduce_is_refused_in_safe_mode(marker):
    files = unzip(rc.dumps(Box("a", np.arange(3))))
    m = manifest_of(files)
    evil = evil_pickle(marker)
    m["skeleton"].update(size=len(evil), digest=digest(evil))
    data = zip_files(
        {"manifest.json": encode_manifest(m), "0.npy": files["0.npy"], "skeleton.pkl": evil}
    )
    refusal(lambda: rc.loads(data, allow_pickle=False), "pickle")


def test_json_skeleton_claiming_pickle_kind_is_refused_in_safe_mode(marker):
    files = unzip(rc.dumps({"x": np.arange(4)}))
    m = manifest_of(files)
    evil = evil_pickle(marker)
    m["skeleton"] = {
        "kind": "pickle",
        "file": "skeleton.pkl",
        "size": len(evil),
        "digest": digest(evil),
    }
    data = zip_files(
        {"manifest.json": encode_manifest(m), "0.npy": files["0.npy"], "skeleton.pkl": evil}
    )
    refusal(lambda: rc.loads(data, allow_pickle=False), "pickle")


def _swap_codec(data: bytes, codec: str, meta=None, version=None) -> bytes:
    files = unzip(data)
    m = manifest_of(files)
    m["parts"][0]["codec"] = codec
    if meta is not None:
        m["parts"][0]["meta"] = meta
    if version is not None:
        m["parts"][0]["codec_version"] = version
    files["manifest.json"] = encode_manifest(m)
    return zip_files(files)


def test_unknown_codec_id_does_not_advertise_a_package_the_bundle_chose(marker):
    data = _swap_codec(rc.dumps({"x": np.arange(4)}), "evilpkg-typosquat.Thing/x")
    err = refusal(lambda: rc.loads(data, allow_pickle=False), "evilpkg-typosquat.Thing/x")
    assert "pip install evilpkg" not in str(err), str(err)


def test_unsupported_codec_version_is_refused():
    data = _swap_codec(rc.dumps({"x": np.arange(4)}), "numpy.ndarray/npy", version=999)
    refusal(lambda: rc.loads(data, allow_pickle=False), "999", "version")


@pytest.mark.parametrize(
    "claimed",
    [
        "pandas.DataFrame/arrow",
        "torch.Tensor/raw",
        "scipy.sparse/npy",
        "xgboost.XGBModel/ubj",
        "sklearn.BaseEstimator/skops",
        "pyarrow.Table/arrow",
    ],
)
def test_part_claiming_another_codec_is_a_deserialization_error(claimed, marker):
    data = _swap_codec(rc.dumps({"x": np.arange(4)}), claimed)
    try:
        rc.loads(data, allow_pickle=False)
    except rc.DeserializationError:
        return
    except BaseException as e:
        pytest.fail(f"{claimed}: raw {type(e).__name__}: {e}")
    pytest.fail(f"a numpy part read as {claimed} loaded")


def _real_part(codec: str) -> bytes:
    """A real bundle whose part 0 is written by ``codec``."""
    x = np.random.default_rng(0).random((20, 3))
    if codec.startswith("xgboost"):
        xgboost = pytest.importorskip("xgboost")
        return rc.dumps(xgboost.XGBClassifier(n_estimators=2).fit(x, (x[:, 0] > 0.5).astype(int)))
    sparse = pytest.importorskip("scipy.sparse")
    return rc.dumps(sparse.csr_matrix(np.eye(3)))


# (codec, class named by the meta, params, base): "numpy" puts the meta on a numpy part (the
# issue's repro), "real" on a real part of that codec, so that the class is all that is wrong
HOSTILE_META = [
    ("xgboost.XGBModel/ubj", "subprocess:run", {"args": ["touch", "{marker}"]}, "numpy"),
    ("xgboost.XGBModel/ubj", "subprocess:run", {"args": ["touch", "{marker}"]}, "real"),
    ("xgboost.XGBModel/ubj", "os:mkdir", {"path": "{marker}"}, "real"),
    ("xgboost.XGBModel/ubj", "subprocess.run", {"args": ["touch", "{marker}"]}, "real"),
    ("xgboost.XGBModel/ubj", "xgboost.sklearn:XGBClassifier.__init__", {}, "real"),
    ("scipy.sparse/npy", "os:system", None, "real"),
    ("scipy.sparse/npy", "subprocess:getoutput", None, "real"),
    ("scipy.sparse/npy", "tabnanny:check", None, "real"),
    ("scipy.sparse/npy", "scipy.sparse:load_npz", None, "real"),
]


_HOSTILE_SCRIPT = textwrap.dedent("""
    import json, sys
    import remote_codecs as rc
    import scipy.sparse, xgboost  # what the codecs import anyway
    for line in open(sys.argv[1]):
        case = json.loads(line)
        before = case["module"] in sys.modules
        try:
            v = rc.loads(open(case["path"], "rb").read(), allow_pickle=False)
            outcome, msg = "LOADED", repr(v)[:200]
        except rc.DeserializationError as e:
            outcome, msg = "REFUSED", str(e)[:400]
        except BaseException as e:
            outcome, msg = "RAW", f"{type(e).__name__}: {str(e)[:300]}"
        imported = (not before) and case["module"] in sys.modules
        print("@" + json.dumps({"outcome": outcome, "msg": msg, "imported": imported}), flush=True)
""")


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    """Every hostile-meta bundle loaded in one fresh interpreter (so that "nothing was
    imported" can be observed): case index -> (outcome, message, imported, marker)."""
    pytest.importorskip("xgboost")
    pytest.importorskip("scipy.sparse")
    folder = tmp_path_factory.mktemp("hostile")
    cases = []
    for i, (codec, cls, params, base) in enumerate(HOSTILE_META):
        marker = folder / f"PWNED-{i}"
        data = rc.dumps({"x": np.arange(4)}) if base == "numpy" else _real_part(codec)
        meta = (
            {"fitted": False}
            if base == "numpy"
            else dict(manifest_of(unzip(data))["parts"][0]["meta"])
        )
        meta["class"] = cls
        if params is not None:
            meta["params"] = json.loads(json.dumps(params).replace("{marker}", str(marker)))
        path = folder / f"case-{i}.zip"
        path.write_bytes(_swap_codec(data, codec, meta=meta))
        module = cls.replace(":", ".").rsplit(".", 1)[0]
        cases.append({"path": str(path), "module": module})
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    out = subprocess.run(
        [sys.executable, "-c", _HOSTILE_SCRIPT, str(folder / "cases.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    results = [json.loads(line[1:]) for line in out.stdout.splitlines() if line.startswith("@")]
    assert len(results) == len(cases), out.stdout + out.stderr[-3000:]
    return {i: (*r.values(), folder / f"PWNED-{i}") for i, r in enumerate(results)}


@pytest.mark.parametrize(
    "case",
    range(len(HOSTILE_META)),
    ids=[f"{c}-{k}-{b}" for c, k, _, b in HOSTILE_META],
)
def test_hostile_meta_is_refused_before_anything_is_imported(hostile_runs, case):
    codec, cls, _, _ = HOSTILE_META[case]
    outcome, msg, imported, marker = hostile_runs[case]
    module = cls.replace(":", ".").rsplit(".", 1)[0]
    assert not marker.exists(), (
        f"{codec} meta naming {cls} ran it: {marker} exists ({outcome} {msg})"
    )
    assert outcome == "REFUSED", f"{outcome} {msg}"
    assert cls in msg, f"the refusal does not name the class {cls!r}: {msg}"
    assert not imported, f"{module} was imported from a bundle's meta"


def test_sklearn_part_calling_a_numpy_function_is_refused(tmp_path, marker):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).random((20, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    files = unzip(rc.dumps(model))
    (tmp_path / "m.f90").write_text("subroutine foo(a)\n  integer a\nend\n")
    inner = unzip(files["0.skops"])
    schema = json.loads(inner["schema.json"])

    def s(text):
        return {
            "__class__": "str",
            "__module__": "builtins",
            "__loader__": "JsonNode",
            "content": json.dumps(text),
            "is_json": True,
            "__id__": abs(hash(text)),
        }

    schema["content"]["content"]["penalty"] = {
        "__class__": "run_main",
        "__module__": "numpy.f2py.f2py2e",
        "__loader__": "ListNode",
        "content": [s("-m"), s("evilmodule"), s(str(tmp_path / "m.f90"))],
        "__id__": 4242,
    }
    inner["schema.json"] = json.dumps(schema).encode()
    part = zip_files(inner)
    m = manifest_of(files)
    m["parts"][0]["files"][0].update(size=len(part), digest=digest(part))
    data = zip_files({"manifest.json": encode_manifest(m), "0.skops": part})
    try:
        refusal(lambda: rc.loads(data, allow_pickle=False), "run_main", "numpy.f2py")
    finally:
        assert files_named(tmp_path, "evilmodule") == [], "numpy.f2py ran from a bundle"


def test_sklearn_tree_stays_untrusted_unless_the_loader_trusts_it():
    pytest.importorskip("sklearn")
    from sklearn.tree import DecisionTreeClassifier

    x = np.random.default_rng(0).random((20, 3))
    model = DecisionTreeClassifier().fit(x, (x[:, 0] > 0.5).astype(int))
    data = rc.dumps(model)
    refusal(lambda: rc.loads(data, allow_pickle=False), "sklearn.tree._tree.Tree")
    back = rc.loads(data, allow_pickle=False, trusted=["sklearn.tree._tree.Tree"])
    assert (back.predict(x) == model.predict(x)).all()


# ----------------------------------------------------------------------------- keys


def test_empty_key_is_refused(tmp_path):
    with pytest.raises((ValueError, TypeError)):
        rc.save({"a": 1}, tmp_path / "b", key=b"")
    assert not (tmp_path / "b" / "manifest.json").exists()
    with pytest.raises((ValueError, TypeError)):
        rc.dumps({"a": 1}, key=b"")
    data = rc.dumps({"a": 1}, key=KEY)
    with pytest.raises((ValueError, TypeError)):
        rc.loads(data, key=b"")


def test_purpose_is_bound_into_the_signature():
    data = rc.dumps({"a": 1}, key=KEY, purpose="job-1/results")
    refusal(
        lambda: rc.loads(data, key=KEY, purpose="job-1/arguments"),
        "purpose",
        "job-1/results",
        error=rc.IntegrityError,
    )
    files = unzip(data)
    m = manifest_of(files)
    m["purpose"] = "job-1/arguments"
    files["manifest.json"] = encode_manifest(m)
    refusal(
        lambda: rc.loads(zip_files(files), key=KEY, purpose="job-1/arguments"),
        "signature",
        "manifest.json",
        error=rc.IntegrityError,
    )


# ----------------------------------------------------------------------------- fuzzing

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "$part",
                    "$tuple",
                    "$dict",
                    "$set",
                    "$frozenset",
                    "$float",
                    "$complex",
                    "$bytes",
                    "$bytearray",
                    "$odict",
                    "format",
                    "skeleton",
                    "parts",
                    "kind",
                    "value",
                    "files",
                    "name",
                    "size",
                    "a",
                ]
            )
            | st.text(max_size=4),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _must_load_or_refuse(fn):
    try:
        return fn()
    except rc.DeserializationError:
        return None
    except BaseException as e:
        raise AssertionError(f"raw {type(e).__name__}: {e}") from e


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    manifest=JSON | st.fixed_dictionaries({"format": st.just(1), "skeleton": JSON, "parts": JSON})
)
def test_fuzz_random_json_manifests(manifest):
    data = zip_files({"manifest.json": json.dumps(manifest).encode(), "0.npy": b"\x93NUMPY"})
    _must_load_or_refuse(lambda: rc.loads(data, allow_pickle=False))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(value=JSON)
def test_fuzz_random_skeleton_values(value):
    files = unzip(rc.dumps({"x": np.arange(4)}))
    m = manifest_of(files)
    m["skeleton"]["value"] = value
    data = zip_files({"manifest.json": encode_manifest(m), "0.npy": files["0.npy"]})
    _must_load_or_refuse(lambda: rc.loads(data, allow_pickle=False))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(value=JSON)
def test_dollar_keys_round_trip_exactly(value):
    """A user's dict that spells a tag is data, not a tag."""
    back = rc.loads(rc.dumps(value), allow_pickle=False)
    assert back == value


def _real_bundles():
    import pandas as pd

    return {
        "json": {"a": [1, 2.5, None], "t": (1, "x"), "s": {1, 2}, "b": b"\x00\xff"},
        "numpy": {"x": np.arange(12, dtype="<f8").reshape(3, 4), "i": np.int16(7)},
        "pandas": pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]}, index=[10, 20, 30]),
        "pickled": Box("label", np.arange(5)),
    }


_BUNDLES = {name: (value, rc.dumps(value, key=KEY)) for name, value in _real_bundles().items()}

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 30), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 30), st.integers(0, 255)),
)


def _mutate(data: bytes, mutation) -> bytes:
    op, pos, arg = mutation
    if not data:
        return bytes([arg]) if op == "insert" else data
    if op == "flip":
        i = pos % len(data)
        return data[:i] + bytes([data[i] ^ arg]) + data[i + 1 :]
    if op == "truncate":
        return data[: pos % len(data)]
    i = pos % (len(data) + 1)
    return data[:i] + bytes([arg]) + data[i:]


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    which=st.sampled_from(sorted(_BUNDLES)),
    target=st.integers(0, 10),
    mutation=MUTATION,
    signed=st.booleans(),
)
def test_fuzz_mutations_of_real_bundles(tmp_path_factory, which, target, mutation, signed):
    value, data = _BUNDLES[which]
    if not signed:
        data = rc.dumps(value)
    key = KEY if signed else None
    files = unzip(data)
    names = [*sorted(files), "<the zip itself>"]
    name = names[target % len(names)]
    if name == "<the zip itself>":
        mutated_zip = _mutate(data, mutation)
        no_op = mutated_zip == data
        semantic_no_op = False
    else:
        new = _mutate(files[name], mutation)
        no_op = new == files[name]
        semantic_no_op = False
        if name == "manifest.json":
            try:
                semantic_no_op = json.loads(new) == json.loads(files[name])
            except ValueError:
                pass
        mutated_zip = zip_files({**files, name: new})
    pickled = which == "pickled"
    back = _must_load_or_refuse(lambda: rc.loads(mutated_zip, key=key, allow_pickle=pickled))
    folder = tmp_path_factory.mktemp("m") / "b"
    if name != "<the zip itself>":
        folder.mkdir()
        for n, content in files.items():
            (folder / n).write_bytes(content)
        (folder / name).write_bytes(_mutate(files[name], mutation))
        back_folder = _must_load_or_refuse(lambda: rc.load(folder, key=key, allow_pickle=pickled))
    else:
        back_folder = None
    for got in (back, back_folder):
        if got is None:
            continue
        if no_op or semantic_no_op:
            assert same(got, value)
            continue
        if name == "<the zip itself>" or (name == "manifest.json" and not signed):
            # zip bookkeeping bytes, or an unsigned manifest: anyone may rewrite it
            assert signed is False or same(got, value), f"a mutation of {name} changed the value"
            continue
        pytest.fail(f"{which}: a mutated {name} ({mutation}) loaded as {got!r}")


# ----------------------------------------------------------------------------- concurrency

_WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import remote_codecs as rc
    who, path, rounds, sync = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    value = {"who": who, "x": np.full(300_000, ord(who), dtype="<f8")}
    errors = []
    for r in range(rounds):
        if sync != "-":
            while not os.path.exists(f"{sync}/go{r}"):
                time.sleep(0.002)
        try:
            rc.save(value, path)
        except Exception as e:
            errors.append(f"{type(e).__module__}.{type(e).__name__}: {e}")
        if sync != "-":
            open(f"{sync}/done{r}-{who}", "w").close()
    print("\\n".join(errors))
""")


def _value(who: str):
    return {"who": who, "x": np.full(300_000, ord(who), dtype="<f8")}


def _writer(tmp_path: Path, who: str, path: Path, rounds: int, sync: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, who, str(path), str(rounds), sync],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


@pytest.mark.timeout(60)
def test_two_writers_leave_one_whole_bundle(tmp_path):
    import time

    path = tmp_path / "bundle"
    sync = tmp_path / "sync"
    sync.mkdir()
    writers = [_writer(tmp_path, w, path, 8, str(sync)) for w in "AB"]
    outcomes = []
    for r in range(8):
        (sync / f"go{r}").touch()
        while not all((sync / f"done{r}-{w}").exists() for w in "AB"):
            assert all(p.poll() is None for p in writers), [p.communicate() for p in writers]
            time.sleep(0.005)
        try:
            got = rc.load(path, allow_pickle=False)
            outcomes.append(got["who"] if same(got, _value(got["who"])) else f"mixed {got['who']}")
        except BaseException as e:
            outcomes.append(f"{type(e).__name__}: {e}")
    reports = [p.communicate(timeout=30) for p in writers]
    assert all(o in ("A", "B") for o in outcomes), outcomes
    for out, err in reports:
        for line in filter(None, out.splitlines()):
            assert line.startswith("remote_codecs"), f"a save failed with a raw error: {line}"
        assert "Traceback" not in err, err


@pytest.mark.timeout(60)
def test_reader_sees_the_old_or_the_new_bundle_while_a_writer_replaces_it(tmp_path):
    path = tmp_path / "bundle"
    rc.save(_value("A"), path)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import sys, numpy as np, remote_codecs as rc
        for i in range(50):
            who = "AB"[i % 2]
            rc.save({"who": who, "x": np.full(300_000, ord(who), dtype="<f8")}, sys.argv[1])
    """),
            str(path),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    problems, loads = [], 0
    while writer.poll() is None:
        try:
            got = rc.load(path, allow_pickle=False)
            loads += 1
            if not same(got, _value(got["who"])):
                problems.append(f"mixed value {got['who']}")
        except BaseException as e:
            problems.append(f"{type(e).__name__}: {e}")
    _, err = writer.communicate()
    assert writer.returncode == 0, err
    assert problems == [], (
        f"{len(problems)} of {loads + len(problems)} loads failed: {problems[:3]}"
    )


def test_bounded_helper_detects_a_blocking_fifo(tmp_path):
    """The hang detector itself works (else the FIFO tests could not fail)."""
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(Blocked):
        bounded(lambda: Path(fifo).read_bytes(), [fifo], limit=0.5)


def test_every_flipped_byte_of_a_single_file_bundle_is_refused_or_harmless():
    """Each byte of a dumps() bundle (the form jobs use for small values), flipped one at
    a time: a typed refusal, or (zip bookkeeping no value depends on) the signed value
    itself; never another value, never an untyped error (a flipped directory byte once
    raised NotImplementedError("zip file version 6.5") out of loads)."""
    value = {"x": np.arange(6), "label": "honest", "n": 3}
    data = rc.dumps(value, key=b"k" * 32, purpose="p")
    refused = 0
    for at in range(len(data)):
        flipped = bytearray(data)
        flipped[at] ^= 0x55
        try:
            got = rc.loads(bytes(flipped), key=b"k" * 32, purpose="p", name="r.bundle")
        except rc.DeserializationError as exc:
            refused += 1
            assert "r.bundle" in str(exc), (at, str(exc))
            continue
        assert got["label"] == "honest" and got["n"] == 3 and list(got["x"]) == list(range(6)), at
    assert refused > 0.8 * len(data), (refused, len(data))
