"""Writing a bundle's files: whatever the pattern of writes (small ones before, between
or after large buffers that are hashed on every core while they are written), the
recorded digest is BLAKE3 of the file's bytes; a write that fails half-way leaves no
bundle and no hash still reading the caller's buffer; a forked child writes as well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile

import blake3
import numpy as np
import pytest

import remote_codecs as rc
from remote_codecs import storage

MiB = 1 << 20


def _pieces(pattern: list[int], seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in pattern]


PATTERNS = {
    "header then large": [128, 9 * MiB + 5],
    "only small": [100, 5000, 0, 70_000],
    "small up to the limit then large": [storage._SMALL - 10, 10, 3 * MiB],
    "small past the limit then large": [600_000, 600_000, 3 * MiB + 1],
    "large, small, large": [5 * MiB + 3, 17, 2 * MiB + 1, 1],
    "one large": [7 * MiB - 1],
}


@pytest.fixture(autouse=True)
def _small_pieces(monkeypatch):
    # Pieces far smaller than the real ones, at odd sizes, so that a test of a few MiB
    # crosses many write and hash piece boundaries (none aligned with the file's).
    monkeypatch.setattr(storage, "WRITE_CHUNK", MiB + 3)
    monkeypatch.setattr(storage, "HASH_PIECE", 2 * MiB + 7)
    monkeypatch.setattr(storage, "PREALLOCATE_MIN", 4 * MiB)


@pytest.mark.parametrize("pattern", list(PATTERNS), ids=list(PATTERNS))
def test_the_digest_is_blake3_of_the_folder_files_bytes(tmp_path, pattern):
    pieces = _pieces(PATTERNS[pattern], 1)
    sink = storage.FolderSink(None, str(tmp_path / "b"))
    with sink.open("0.bin") as f:
        for p in pieces:
            # bytes, bytearray and non-byte memoryviews all pass through
            f.write(memoryview(np.frombuffer(p, np.uint8)) if len(p) % 2 else bytearray(p))
    sink.abort()  # (the file is checked in the temporary folder, before any commit)
    record = f.record
    data = b"".join(pieces)
    assert record is not None and record.size == len(data)
    assert record.digest == "blake3:" + blake3.blake3(data).hexdigest()


@pytest.mark.parametrize("pattern", list(PATTERNS), ids=list(PATTERNS))
def test_the_digest_is_blake3_of_the_zip_members_bytes(pattern):
    pieces = _pieces(PATTERNS[pattern], 2)
    sink = storage.ZipSink()
    with sink.open("0.bin") as f:
        for p in pieces:
            f.write(p)
    sink.commit(b"{}")
    stored = zipfile.ZipFile(sink.buffer).read("0.bin")
    assert stored == b"".join(pieces)
    assert f.record is not None
    assert f.record.digest == "blake3:" + blake3.blake3(stored).hexdigest()


def test_a_saved_array_verifies_and_its_digest_is_blake3_of_its_file(tmp_path):
    a = np.random.default_rng(3).standard_normal((3 * MiB + 17) // 8)
    rc.save({"a": a, "tag": "x"}, tmp_path / "b", key=b"k" * 32)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (record,) = manifest["parts"][0]["files"]
    raw = (tmp_path / "b" / record["name"]).read_bytes()
    assert record["digest"] == "blake3:" + blake3.blake3(raw).hexdigest()
    out = rc.load(tmp_path / "b", key=b"k" * 32)
    assert np.array_equal(out["a"], a) and out["tag"] == "x"


def test_many_small_writes_are_not_kept_in_memory(tmp_path):
    import tracemalloc

    piece = bytes(range(256)) * 400  # 100 KiB, 400 times: 40 MiB of small writes
    sink = storage.FolderSink(None, str(tmp_path / "b"))
    tracemalloc.start()
    try:
        with sink.open("0.bin") as f:
            for _ in range(400):
                f.write(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        sink.abort()
    assert peak < 4 * MiB  # what waits to be hashed is bounded (1 MiB), not the file
    assert f.record is not None
    assert f.record.digest == "blake3:" + blake3.blake3(piece * 400).hexdigest()


class _Raw:
    """A slow file whose ``fail_at``-th write fails."""

    def __init__(self, fail_at: int) -> None:
        self.writes = 0
        self.fail_at = fail_at

    def write(self, data):
        time.sleep(0.01)
        self.writes += 1
        if self.writes == self.fail_at:
            raise OSError(28, "No space left on device")
        return len(data)

    def close(self):
        pass


class _SlowHasher:
    """Records whether an update is running, and every update that starts."""

    def __init__(self) -> None:
        self.running = False
        self.started = 0
        self.lock = threading.Lock()

    def update(self, data):
        with self.lock:
            self.running = True
            self.started += 1
        time.sleep(0.05)
        with self.lock:
            self.running = False


def test_a_failed_write_returns_only_once_the_hash_has_stopped():
    view = memoryview(bytearray(40 * MiB))
    hasher = _SlowHasher()
    with pytest.raises(OSError, match="No space"):
        storage._write_hashing(_Raw(fail_at=3), view, hasher)
    assert not hasher.running  # nothing reads the buffer once the error is raised
    started = hasher.started
    assert started >= 1
    time.sleep(0.1)
    assert hasher.started == started  # and no hash starts afterwards
    assert started < len(range(0, len(view), storage.HASH_PIECE))  # it stopped early


def test_a_hashing_writer_refuses_to_go_on_after_a_failed_large_write():
    w = storage.HashingWriter(_Raw(fail_at=2), "0.bin")  # type: ignore[arg-type]
    with pytest.raises(OSError, match="No space"):
        w.write(bytes(3 * MiB))
    with pytest.raises(OSError, match="an earlier write failed"):
        w.write(b"more")
    w.close()
    assert w.record is None  # an incomplete file never gets a record


_FAILING_SAVE = r"""
import os, resource, signal, sys
import numpy as np
import remote_codecs as rc

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (24 << 20, resource.RLIM_INFINITY))
root = sys.argv[1]
try:
    rc.save(np.ones(64 << 17), os.path.join(root, "big"))  # 64 MiB
except Exception as exc:
    print("failed:", type(exc).__name__, exc)
else:
    print("saved")
print("left:", sorted(os.listdir(root)))
small = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: still hashed while written
rc.save(small, os.path.join(root, "small"))
assert np.array_equal(rc.load(os.path.join(root, "small")), small)
print("then saved and loaded")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and EFBIG as on Linux")
def test_a_save_that_fails_half_way_leaves_no_bundle_and_the_next_save_works(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _FAILING_SAVE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("failed: SerializationError") and "File too large" in lines[0]
    assert lines[1] == "left: []"  # no bundle, no temporary folder
    assert lines[2] == "then saved and loaded"


_FORKED_SAVE = r"""
import os, sys
import numpy as np
import remote_codecs as rc

root = sys.argv[1]
a = np.arange(5 << 20, dtype=np.float64)  # 40 MiB: the hash threads start here
rc.save(a, os.path.join(root, "parent"))
pid = os.fork()
if pid == 0:
    import faulthandler
    faulthandler.dump_traceback_later(60, exit=True)  # never an orphan waiting forever
    rc.save(a, os.path.join(root, "child"))  # the parent's threads are not in the child
    ok = np.array_equal(rc.load(os.path.join(root, "child")), a)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
rc.save(a, os.path.join(root, "parent-again"))
print("child exit", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_after_a_large_save_saves_too(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _FORKED_SAVE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,  # (it used to wait forever for the parent's hash thread)
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "child exit 0"
