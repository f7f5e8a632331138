"""The job folder's files are never trusted: links planted in it are not written
through, junk records are typed errors naming the file, and nothing read from the folder
reaches the terminal raw.

The attacker can write the job root (before a job starts, while it waits in the queue,
after it ends) but holds no key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import remote_codecs as rc
from remote_runtime import RemoteExecutor, get_future
from servers import bundle_of, copy_bundle, remove_bundle, status_record


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "remote_runtime", *args], capture_output=True, text=True, timeout=60
    )


def wait_for(path):
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "gate opened"


def give(value):
    print("the job prints this line")
    return value


def throw(message):
    raise ValueError(message)


def run_planted(job_root, tmp_path, plant, fn, *args, keep_alive=0):
    """Submit ``fn(*args)`` behind a job that holds the only slot, plant into its folder
    while it waits (its folder is written, it has not started), then let it run. Returns
    the future and its exception; a job that hangs fails the test (it is cancelled and
    left behind) instead of hanging the session."""
    gate = tmp_path / "gate"
    ex = RemoteExecutor(
        max_parallel_jobs=1, stream_logs=False, keep_alive_period_in_seconds=keep_alive
    )
    holder = victim = None
    try:
        holder = ex.submit(wait_for, str(gate))
        victim = ex.submit(fn, *args)
        plant(job_root / victim.job_name)
        gate.touch()
        assert holder.result(timeout=120) == "gate opened"
        exc = victim.exception(timeout=120)
    finally:
        stuck = victim is None or not victim.done()
        for future in (holder, victim):
            if stuck and future is not None:
                future.cancel()
        ex.shutdown(wait=not stuck, cancel_futures=True)
    return victim, exc


def snapshot(folder):
    """Every file under ``folder`` with its bytes (what must not change)."""
    return {
        os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(folder)
        for f in files
    }


@pytest.fixture
def outside(tmp_path):
    """A folder outside the job root holding files a planted link would destroy (part
    file names start with a digit; a folder of only such files is taken for an old bundle)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in ("0.npy", "1", "12-notes.txt"):
        (folder / name).write_bytes(f"precious {name}".encode())
    return folder


# -- links planted in the job folder --------------------------------------------------------------


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
def test_a_results_link_is_not_written_through(job_root, tmp_path, outside, keep_alive):
    before = snapshot(outside)
    future, exc = run_planted(
        job_root,
        tmp_path,
        lambda folder: os.symlink(outside, folder / "results"),
        give,
        [1, 2, 3],
        keep_alive=keep_alive,
    )
    assert isinstance(exc, rc.IntegrityError), exc
    assert "results" in str(exc) and "symbolic link" in str(exc)
    assert snapshot(outside) == before
    assert future.status() == "Failed"


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
def test_an_exception_link_is_not_written_through(job_root, tmp_path, outside, keep_alive):
    before = snapshot(outside)
    _, exc = run_planted(
        job_root,
        tmp_path,
        lambda folder: os.symlink(outside, folder / "exception"),
        throw,
        "boom",
        keep_alive=keep_alive,
    )
    assert isinstance(exc, rc.IntegrityError), exc
    assert "exception" in str(exc) and "symbolic link" in str(exc)
    assert snapshot(outside) == before


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
@pytest.mark.parametrize("what", ["stdout.log", "stderr.log", "logs"])
def test_a_log_link_is_not_written_through(job_root, tmp_path, outside, keep_alive, what):
    target = outside / "12-notes.txt"
    before = snapshot(outside)

    def plant(folder):
        if what == "logs":
            os.symlink(outside, folder / "logs")
        else:
            (folder / "logs").mkdir(exist_ok=True)
            os.symlink(target, folder / "logs" / what)

    _, exc = run_planted(job_root, tmp_path, plant, give, 7, keep_alive=keep_alive)
    assert isinstance(exc, rc.IntegrityError), exc
    assert "symbolic link" in str(exc)
    assert snapshot(outside) == before


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
def test_a_log_fifo_fails_the_job_instead_of_blocking_it(job_root, tmp_path, keep_alive):
    readers = []

    def plant(folder):
        (folder / "logs").mkdir(exist_ok=True)
        os.mkfifo(folder / "logs" / "stdout.log")
        # with a reader at the other end, opening it for writing would not even block
        readers.append(os.open(folder / "logs" / "stdout.log", os.O_RDONLY | os.O_NONBLOCK))

    try:
        _, exc = run_planted(job_root, tmp_path, plant, give, 7, keep_alive=keep_alive)
    finally:
        for fd in readers:
            os.close(fd)
    assert isinstance(exc, rc.IntegrityError) and "FIFO" in str(exc), exc


@pytest.mark.parametrize("which", ["function", "arguments"])
def test_an_input_bundle_link_is_refused(job_root, tmp_path, which):
    """A link to a faithful copy of the job's own bundle, outside the root."""
    copies = tmp_path / "copies"

    def plant(folder):
        bundle = bundle_of(folder, which)  # <which>.bundle (a small value) or <which>/
        copies.mkdir(exist_ok=True)
        copy_bundle(bundle, copies, which)
        remove_bundle(folder, which)
        os.symlink(bundle_of(copies, which), bundle)

    _, exc = run_planted(job_root, tmp_path, plant, give, 7)
    assert isinstance(exc, rc.IntegrityError) and which in str(exc), exc


def test_a_job_folder_replaced_by_a_link_is_not_written_through(job_root, tmp_path):
    moved = tmp_path / "moved"

    def plant(folder):
        folder.rename(moved)
        os.symlink(moved, folder)

    _, exc = run_planted(job_root, tmp_path, plant, give, 7)
    assert isinstance(exc, ValueError) and "symbolic link" in str(exc), exc
    assert not (moved / "results").exists()
    assert not (moved / "logs" / "stdout.log").exists()
    assert not (moved / "status.json").exists()  # never written: the job is Pending


# -- junk records -----------------------------------------------------------------------------------


def _plant_status(kind, path):
    path.unlink(missing_ok=True)  # (a job not started yet has none)
    if kind == "not json":
        path.write_text("{'state': 'Completed',")
    elif kind == "a list":
        path.write_text(json.dumps(["Completed", 0]))
    elif kind == "deeply nested":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "a fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(1 << 30)  # sparse: 1 GiB
    elif kind == "a link":
        os.symlink("/etc/hostname", path)
    elif kind == "a folder":
        path.mkdir()
    elif kind == "wrong types":
        path.write_text(json.dumps({"state": "Completed", "pid": "1", "attempt": [1]}))
    elif kind == "unknown state":
        path.write_text(json.dumps({"state": "Pwned"}))
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00junk")


JUNK = [
    "not json",
    "a list",
    "deeply nested",
    "a fifo",
    "huge",
    "a link",
    "a folder",
    "wrong types",
    "unknown state",
    "binary",
]


@pytest.fixture
def ended_job():
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(give, 5)
        assert f.result() == 5
    return f.job_name


@pytest.mark.parametrize("kind", JUNK)
def test_a_junk_status_is_an_unknown_state_naming_the_file(job_root, ended_job, kind):
    _plant_status(kind, job_root / ended_job / "status.json")
    out = cli("jobs", "show", ended_job)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("state"))
    assert "Unknown" in line and "status.json" in line
    future = get_future(ended_job)
    assert future.status() == "Unknown"
    assert "status.json" in future.describe()["status"]["unreadable"]
    listing = cli("jobs", "list")
    assert listing.returncode == 0 and "Unknown" in listing.stdout, listing.stderr


@pytest.mark.parametrize("kind", JUNK[:7])
def test_a_junk_job_record_is_a_typed_error_naming_the_file(job_root, ended_job, kind):
    _plant_status(kind, job_root / ended_job / "job.json")
    out = cli("jobs", "show", ended_job)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "job.json" in out.stderr, out.stderr
    listing = cli("jobs", "list")  # one junk record does not hide the other jobs
    assert listing.returncode == 0 and ended_job in listing.stdout, listing.stderr
    assert "job.json" in listing.stdout


@pytest.mark.parametrize("kind", ["not json", "a fifo", "huge", "a link"])
def test_a_job_whose_record_was_replaced_before_it_started_refuses_it(job_root, tmp_path, kind):
    _, exc = run_planted(
        job_root, tmp_path, lambda folder: _plant_status(kind, folder / "job.json"), give, 7
    )
    assert isinstance(exc, (rc.IntegrityError, ValueError)) and "job.json" in str(exc), exc


def test_a_junk_status_before_start_is_replaced_by_the_job(job_root, tmp_path):
    future, exc = run_planted(
        job_root, tmp_path, lambda folder: _plant_status("a list", folder / "status.json"), give, 7
    )
    assert exc is None and future.result() == 7 and future.status() == "Completed"


# -- nothing from the folder reaches the terminal raw -----------------------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m\r\u202e"


def test_show_and_list_print_no_escape_sequence_from_the_folder(job_root, ended_job):
    status_path = job_root / ended_job / "status.json"
    status = status_record(status_path.parent)
    status.update(
        host=f"host{ESCAPES}",
        stage=f"stage{ESCAPES}",
        error={"type": f"Type{ESCAPES}", "message": f"message{ESCAPES}"},
    )
    status_path.write_text(json.dumps(status))
    spec_path = job_root / ended_job / "job.json"
    spec = json.loads(spec_path.read_text())
    spec.update(function=f"fn{ESCAPES}", python=f"3{ESCAPES}")
    spec["settings"]["job_name_prefix"] = ESCAPES
    spec_path.write_text(json.dumps(spec))
    for args in (("jobs", "show", ended_job), ("jobs", "list")):
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        for ch in "\x1b\x07\r\u202e":
            assert ch not in out.stdout and ch not in out.stderr, (args, ch)
    show = cli("jobs", "show", ended_job).stdout
    assert "message\\x1b]0;owned\\x07" in show  # shown, escaped


def test_cancel_prints_no_escape_sequence_from_the_folder(job_root, ended_job):
    status_path = job_root / ended_job / "status.json"
    status = status_record(status_path.parent)
    status.update(state="InProgress", pid=4194303, host=f"elsewhere{ESCAPES}")
    status_path.write_text(json.dumps(status))
    out = cli("jobs", "cancel", ended_job)
    assert out.returncode == 1 and "not stopped" in out.stderr
    for ch in "\x1b\x07\r\u202e":
        assert ch not in out.stdout and ch not in out.stderr


def test_a_huge_error_message_is_clipped_in_the_status(job_root):
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(throw, "x" * 5_000_000)
        exc = f.exception()
    assert isinstance(exc, ValueError) and len(str(exc)) == 5_000_000  # whole, from exception/
    status = status_record(job_root / f.job_name)
    assert len(status["error"]["message"]) < 100_000 and f.status() == "Failed"
    assert cli("jobs", "show", f.job_name).returncode == 0


@pytest.mark.parametrize("kind", ["a fifo", "a link"])
def test_logs_are_never_read_through_a_link_or_from_a_fifo(job_root, ended_job, kind):
    log = job_root / ended_job / "logs" / "stdout.log"
    log.unlink()
    secret = job_root.parent / "private.txt"
    secret.write_text("private text of the user")
    if kind == "a fifo":
        os.mkfifo(log)
    else:
        os.symlink(secret, log)
    out = cli("jobs", "logs", ended_job)  # returns (no hang), shows nothing from outside
    assert out.returncode == 0, out.stderr
    assert "private text" not in out.stdout
    assert "private text" not in get_future(ended_job).logs()
