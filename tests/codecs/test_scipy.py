"""scipy sparse matrices and arrays, every format, without pickle."""

from __future__ import annotations

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")
import scipy  # noqa: E402

import remote_codecs as rc  # noqa: E402
from bundles import edit_manifest  # noqa: E402

FORMATS = ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_sparse_round_trip(fmt, kind):
    dense = np.zeros((6, 4), dtype=np.float32)
    dense[0, 1], dense[3, 2], dense[5, 3] = 1.5, -2.0, 7.0
    cls = getattr(sp, f"{fmt}_{kind}")
    m = cls(dense)
    data = rc.dumps({"m": m})
    assert [p.codec for p in rc.inspect(data).parts] == ["scipy.sparse/npy"]
    back = rc.loads(data, allow_pickle=False)["m"]
    assert type(back) is type(m) and back.dtype == m.dtype and back.shape == m.shape
    np.testing.assert_array_equal(back.toarray(), dense)


def test_large_random_csr():
    m = sp.random(2000, 300, density=0.01, format="csr", random_state=0, dtype=np.float64)
    back = rc.loads(rc.dumps(m), allow_pickle=False)
    assert (back != m).nnz == 0 and back.has_sorted_indices == m.has_sorted_indices


def _builds(fmt: str, ndim: int) -> bool:
    shape = (1,) * ndim
    try:
        return getattr(sp, f"{fmt}_array")(np.zeros(shape)).shape == shape
    except (TypeError, ValueError):
        return False


def _needs_ndim(fmt: str, ndim: int) -> None:
    """Skip where this scipy has no such sparse array (under scipy 1.11 every one was 2-D)."""
    if not _builds(fmt, ndim):
        pytest.skip(f"scipy {scipy.__version__} has no {ndim}-D {fmt}_array (a newer scipy has)")


@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), (2, 1, 3, 2)])
def test_coo_array_of_any_ndim_round_trips(shape):
    _needs_ndim("coo", len(shape))
    rng = np.random.default_rng(0)
    dense = rng.integers(-3, 3, size=shape).astype(np.float64) * (rng.random(shape) < 0.4)
    m = sp.coo_array(dense)
    back = rc.loads(rc.dumps({"m": m}), allow_pickle=False)["m"]
    assert type(back) is sp.coo_array and back.shape == shape and back.dtype == m.dtype
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(back.coords, m.coords))
    np.testing.assert_array_equal(back.toarray(), dense)


@pytest.mark.parametrize("fmt", ["csr", "dok"])
def test_one_dimensional_arrays_round_trip(fmt):
    _needs_ndim(fmt, 1)
    dense = np.array([0, 1.5, 0, 0, -2.0])
    m = getattr(sp, f"{fmt}_array")(dense)
    back = rc.loads(rc.dumps(m), allow_pickle=False)
    assert type(back) is type(m) and back.shape == (5,)
    np.testing.assert_array_equal(back.toarray(), dense)


def _as_one_dimensional(data: bytes) -> bytes:
    """A bundle of the 1-D coo_array [0, 0, 0, 4, 0, 5, 0], made from the 2-D one of shape
    (1, 7) by editing its parts: what a scipy with 1-D sparse arrays writes for it."""
    import io
    import json
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "manifest.json":
                manifest = json.loads(body)
                (part,) = manifest["parts"]
                part["files"] = [f for f in part["files"] if not f["name"].endswith(".row.npy")]
                for f in part["files"]:
                    f["name"] = f["name"].replace(".col.npy", ".coords.0.npy")
                meta = part["meta"]
                meta["shape"] = [7]
                del meta["arrays"]["row"]
                meta["arrays"]["coords.0"] = meta["arrays"].pop("col")
                body = json.dumps(manifest).encode()
            elif info.filename.endswith(".row.npy"):
                continue
            dst.writestr(info.filename.replace(".col.npy", ".coords.0.npy"), body)
    return out.getvalue()


def test_a_one_dimensional_array_loads_exactly_or_is_refused_naming_scipy():
    """A 1-D coo_array written by a newer scipy: exact where scipy builds 1-D sparse
    arrays, else refused naming this scipy's version (never reshaped to 2-D)."""
    m = sp.coo_array((np.array([4.0, 5.0]), (np.array([0, 0]), np.array([3, 5]))), shape=(1, 7))
    data = _as_one_dimensional(rc.dumps(m))
    if _builds("coo", 1):
        back = rc.loads(data, allow_pickle=False)
        assert type(back) is sp.coo_array and back.shape == (7,)
        np.testing.assert_array_equal(back.toarray(), [0, 0, 0, 4.0, 0, 5.0, 0])
    else:
        with pytest.raises(
            rc.DeserializationError,
            match=rf"1-D coo_array .*scipy {scipy.__version__} builds only 2-D",
        ):
            rc.loads(data, allow_pickle=False)


def test_coo_keeps_duplicates_and_index_dtype():
    m = sp.coo_matrix(
        (np.array([1.0, 2.0, 3.0]), (np.array([0, 0, 2], np.int64), np.array([1, 1, 0], np.int64))),
        shape=(3, 3),
    )
    back = rc.loads(rc.dumps(m), allow_pickle=False)
    assert back.nnz == 3 and back.row.dtype == m.row.dtype and back.col.dtype == m.col.dtype
    np.testing.assert_array_equal(back.data, m.data)


def test_subclass_is_not_built_from_a_name():
    class Mine(sp.csr_matrix):
        pass

    data = rc.dumps(Mine(np.eye(3)))
    assert rc.inspect(data).needs_pickle  # travels by pickle, never by a class name


HOSTILE_CLASSES = [
    "os:system",
    "subprocess:Popen",
    "scipy.sparse:random_array",
    "scipy.sparse._construct:eye_array",
    "antigravity:csr_matrix",
    "scipy.sparse.x:csr_matrix.__init__",
    None,
    ["scipy.sparse._csr", "csr_matrix"],
]


@pytest.mark.parametrize("cls", HOSTILE_CLASSES)
def test_hostile_class_is_refused_before_anything_is_imported(cls):
    data = rc.dumps(sp.csr_matrix(np.eye(3)))

    def edit(manifest):
        manifest["parts"][0]["meta"]["class"] = cls

    bad = edit_manifest(data, edit)
    with pytest.raises(rc.DeserializationError, match="not one of the scipy.sparse classes"):
        rc.loads(bad, allow_pickle=False)


def test_hostile_module_is_never_imported(tmp_path):
    """In a fresh interpreter: a part naming a module that is not loaded yet leaves it unloaded."""
    import subprocess
    import sys

    data = rc.dumps(sp.csr_matrix(np.eye(3)))

    def edit(manifest):
        manifest["parts"][0]["meta"]["class"] = "antigravity:csr_matrix"

    path = tmp_path / "bad.bundle"
    path.write_bytes(edit_manifest(data, edit))
    code = (
        "import sys, remote_codecs as rc\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "try:\n    rc.loads(data, allow_pickle=False)\n"
        "except rc.DeserializationError as e:\n    print('refused', e)\n"
        "print('antigravity' in sys.modules, 'webbrowser' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "refused" in out.stdout and out.stdout.strip().endswith("False False"), out.stdout


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(stored="random"),
        lambda m: m.update(format="lil_or_worse"),
        lambda m: m.update(shape=[3, -1]),
        lambda m: m.update(shape="3x3"),
        lambda m: m["arrays"].pop("indptr"),
    ],
)
def test_malformed_meta_is_a_deserialization_error(edit):
    data = rc.dumps(sp.csr_matrix(np.eye(3)))
    bad = edit_manifest(data, lambda manifest: edit(manifest["parts"][0]["meta"]))
    with pytest.raises(rc.DeserializationError):
        rc.loads(bad, allow_pickle=False)


def test_out_of_bounds_indices_are_refused():
    data = rc.dumps(sp.csr_matrix(np.eye(3)))
    plain = sp.csr_matrix(np.eye(3))
    plain.indices[:] = 1000  # what an attacker would write into the .npy
    # rebuild the bundle with a forged indices file: same meta, hostile content
    import io
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    name = next(n for n in src.namelist() if n.endswith(".indices.npy"))
    raw = bytearray(src.read(name))
    header = len(raw) - plain.indices.nbytes
    raw[header:] = plain.indices.tobytes()

    def edit(manifest):
        import blake3

        for f in manifest["parts"][0]["files"]:
            if f["name"] == name:
                f["digest"] = "blake3:" + blake3.blake3(bytes(raw)).hexdigest()

    edited = zipfile.ZipFile(io.BytesIO(edit_manifest(data, edit)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for n in edited.namelist():
            dst.writestr(n, bytes(raw) if n == name else edited.read(n))
    with pytest.raises(rc.DeserializationError):
        rc.loads(out.getvalue(), allow_pickle=False)


def test_int64_indices_stay_int64():
    m = sp.csr_array(np.eye(4))
    m.indices, m.indptr = m.indices.astype(np.int64), m.indptr.astype(np.int64)
    back = rc.loads(rc.dumps(m), allow_pickle=False)
    assert back.indices.dtype == np.int64 and back.indptr.dtype == np.int64
