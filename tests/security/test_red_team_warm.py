"""Red-team tests of the recent changes, written from the outside (README, the job folder
layout of docs/ARCHITECTURE.md, and the public API only): single-file bundles, the
status.json log, the content-addressed function bundle, warm workers' spooled output and
their claim logs. Each test asserts the SAFE behaviour; an ``xfail(strict=True)`` marks a
finding that is still open."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import remote_codecs as rc
from remote_runtime import (
    IntegrityError,
    JobFailedError,
    JobTimeoutError,
    RemoteExecutor,
    RemoteRuntimeError,
    get_future,
    list_futures,
    remote,
)

pytestmark = pytest.mark.timeout(40)

WARM = {"max_parallel_jobs": 1, "keep_alive_period_in_seconds": 30}


# --- helpers -------------------------------------------------------------------------------


def job_dir(root: Path, name: str) -> Path:
    return root / name


def status_lines(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "status.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def last_status(folder: Path) -> dict[str, Any]:
    return status_lines(folder)[-1]


def log_text(folder: Path, stream: str) -> str:
    path = folder / "logs" / f"{stream}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for(predicate: Any, limit: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def running(root: Path, name: str) -> bool:
    folder = root / name
    try:
        return (
            last_status(folder).get("state") == "InProgress"
            and last_status(folder).get("stage") == "running"
        )
    except (OSError, ValueError, IndexError):
        return False


def cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "remote-runtime"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def cache_dir() -> Path:
    return Path(os.environ["XDG_CACHE_HOME"]) / "remote-runtime"


# --- functions the jobs run (this module is not importable by a job: they travel by value)


def echo(x: Any) -> Any:
    return x


def add_one(x: int) -> int:
    return x + 1


def make_marker(path: str) -> str:
    os.mkdir(path)
    return "evil"


def wait_for_file(path: str, value: Any, limit: float = 15.0) -> Any:
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def print_and_return(text: str) -> str:
    print(text)
    return text


# ===========================================================================================
# 1. warm workers: output must land in the job's own logs, complete, and nowhere else
# ===========================================================================================


def lingering_printer(stop: str) -> str:
    def loop() -> None:
        deadline = time.monotonic() + 8
        while not os.path.exists(stop) and time.monotonic() < deadline:
            print("LEAK-FROM-JOB-1", flush=True)
            os.write(2, b"LEAK-FROM-JOB-1-ERR\n")
            time.sleep(0.01)

    threading.Thread(target=loop, daemon=True).start()
    print("job1 own line", flush=True)
    return "job1"


def quiet_sleeper(seconds: float) -> str:
    time.sleep(seconds)
    print("job2 own line", flush=True)
    return "job2"


@pytest.fixture
def stop_flag(tmp_path):
    """Stops the lingering thread of a test's job when the test ends, so that it cannot
    pollute the next test (idle warm workers are shared by every executor of the process)."""
    flag = tmp_path / "stop"
    yield flag
    flag.touch()
    time.sleep(0.1)


@pytest.mark.xfail(
    strict=True,
    reason="DOCUMENTED LIMITATION (README, warm workers): a thread a warm job leaves running "
    "keeps running in its worker, and what it prints lands in the logs of the worker's "
    "later jobs (same job root and settings: workers never serve another root)",
)
def test_a_thread_that_outlives_its_warm_job_does_not_write_into_the_next_jobs_logs(
    job_root, stop_flag
):
    with RemoteExecutor(**WARM) as ex:
        f1 = ex.submit(lingering_printer, str(stop_flag))
        assert f1.result() == "job1"
        f2 = ex.submit(quiet_sleeper, 1.0)
        assert f2.result() == "job2"
    j2 = job_root / f2.job_name
    assert "job2 own line" in log_text(j2, "stdout")
    assert "LEAK-FROM-JOB-1" not in log_text(j2, "stdout")
    assert "LEAK-FROM-JOB-1" not in log_text(j2, "stderr")
    assert "job1 own line" in log_text(job_root / f1.job_name, "stdout")


def test_a_lingering_thread_does_not_write_into_a_job_of_another_executor_and_root(
    job_root, tmp_path, monkeypatch, stop_flag
):
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(lingering_printer, str(stop_flag)).result() == "job1"
    other_root = tmp_path / "other-root"
    with RemoteExecutor(**WARM, s3_root_uri=str(other_root)) as ex:
        f2 = ex.submit(quiet_sleeper, 1.0)
        assert f2.result() == "job2"
    j2 = other_root / f2.job_name
    assert "job2 own line" in log_text(j2, "stdout")
    assert "LEAK-FROM-JOB-1" not in log_text(j2, "stdout") + log_text(j2, "stderr")


def print_without_newline() -> str:
    sys.stdout.write("no newline at the end")
    sys.stderr.write("err without newline")
    return "ok"


def test_output_without_a_newline_and_without_flush_is_kept(job_root):
    with RemoteExecutor(**WARM) as ex:
        f = ex.submit(print_without_newline)
        assert f.result() == "ok"
        f2 = ex.submit(add_one, 1)
        assert f2.result() == 2
    folder = job_root / f.job_name
    assert log_text(folder, "stdout") == "no newline at the end"
    assert log_text(folder, "stderr") == "err without newline"
    assert "newline" not in log_text(job_root / f2.job_name, "stdout")


def raw_fd_writes() -> str:
    os.write(1, b"raw fd one\n")
    os.write(2, b"raw fd two\n")
    return "ok"


def test_direct_writes_to_fd_1_and_2_are_the_jobs_logs(job_root):
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 1).result() == 2  # the worker is warm now
        f = ex.submit(raw_fd_writes)
        assert f.result() == "ok"
    folder = job_root / f.job_name
    assert "raw fd one" in log_text(folder, "stdout")
    assert "raw fd two" in log_text(folder, "stderr")


def print_a_lot(n: int) -> int:
    line = "x" * 99 + "\n"
    for _ in range(n):
        sys.stdout.write(line)
    return n


def test_a_lot_of_output_is_kept_whole(job_root):
    n = 50_000  # 5 MB
    with RemoteExecutor(**WARM) as ex:
        f = ex.submit(print_a_lot, n)
        assert f.result() == n
        f2 = ex.submit(print_and_return, "second")
        assert f2.result() == "second"
    out = (job_root / f.job_name / "logs" / "stdout.log").read_bytes()
    assert len(out) == 100 * n
    assert log_text(job_root / f2.job_name, "stdout") == "second\n"


def close_fd_1() -> str:
    print("before close", flush=True)
    os.close(1)
    return "closed"


def test_a_job_that_closes_fd_1_does_not_lose_the_next_jobs_output(job_root):
    with RemoteExecutor(**WARM) as ex:
        f1 = ex.submit(close_fd_1)
        try:
            f1.result()
        except Exception:
            pass  # failing this job is acceptable; losing the next one's output is not
        f2 = ex.submit(print_and_return, "next job output")
        assert f2.result() == "next job output"
    assert "next job output" in log_text(job_root / f2.job_name, "stdout")


def redirect_fd(fd: int, path: str) -> str:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(target, fd)
    os.close(target)
    return "redirected"


def print_secret(text: str) -> str:
    print(text, flush=True)
    print(text, file=sys.stderr, flush=True)
    return text


@pytest.mark.parametrize("fd", [1, 2])
def test_a_job_that_dup2s_over_its_fd_does_not_capture_the_next_jobs_output(job_root, tmp_path, fd):
    sink = tmp_path / f"sink-{fd}"
    with RemoteExecutor(**WARM) as ex:
        f1 = ex.submit(redirect_fd, fd, str(sink))
        assert f1.result() == "redirected"
        f2 = ex.submit(print_secret, "SECRET-OF-JOB-2")
        assert f2.result() == "SECRET-OF-JOB-2"
    j2 = job_root / f2.job_name
    leaked = sink.read_text() if sink.exists() else ""
    assert "SECRET-OF-JOB-2" not in leaked, "job 2's output went to job 1's file"
    assert "SECRET-OF-JOB-2" in log_text(j2, "stdout")
    assert "SECRET-OF-JOB-2" in log_text(j2, "stderr")


def print_then_sleep(text: str, seconds: float) -> str:
    print(text, flush=True)
    print(text + "-err", file=sys.stderr, flush=True)
    time.sleep(seconds)
    return "too late"


def test_a_warm_job_past_its_max_runtime_keeps_its_output(job_root):
    with RemoteExecutor(
        max_parallel_jobs=1, keep_alive_period_in_seconds=30, max_runtime_in_seconds=2
    ) as ex:
        assert ex.submit(add_one, 1).result() == 2
        f = ex.submit(print_then_sleep, "printed before the timeout", 30)
        with pytest.raises(JobTimeoutError):
            f.result(timeout=20)
        f2 = ex.submit(print_and_return, "after the timeout")
        assert f2.result(timeout=20) == "after the timeout"
    folder = job_root / f.job_name
    assert "printed before the timeout" in log_text(folder, "stdout")
    assert "printed before the timeout-err" in log_text(folder, "stderr")
    assert last_status(folder)["state"] == "Failed"
    assert log_text(job_root / f2.job_name, "stdout") == "after the timeout\n"


def kill_my_worker(text: str) -> str:
    print(text, flush=True)
    print(text + "-err", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


def test_a_warm_job_that_kills_its_worker_keeps_its_output_and_fails(job_root):
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 1).result() == 2
        f = ex.submit(kill_my_worker, "last words")
        with pytest.raises(JobFailedError):
            f.result(timeout=20)
        f2 = ex.submit(add_one, 2)
        assert f2.result(timeout=20) == 3
    folder = job_root / f.job_name
    assert last_status(folder)["state"] == "Failed"
    assert "last words" in log_text(folder, "stdout")
    assert "last words-err" in log_text(folder, "stderr")


def test_reattach_from_another_process_reads_a_warm_jobs_result_and_logs(job_root, tmp_path):
    flag = tmp_path / "go"
    script = (
        "import sys, time\n"
        "from remote_runtime import get_future\n"
        "f = get_future(sys.argv[1])\n"
        "print('STATUS', f.status())\n"
        "print('RESULT', f.result(timeout=20))\n"
        "print('LOGS', repr(f.logs()))\n"
    )

    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 1).result() == 2
        f = ex.submit(print_then_wait, "visible output", str(flag))
        wait_for(lambda: running(job_root, f.job_name), what="job running")
        proc = subprocess.Popen(
            [sys.executable, "-c", script, f.job_name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        time.sleep(0.5)
        flag.touch()
        assert f.result(timeout=20) == "done"
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "STATUS InProgress" in out
    assert "RESULT done" in out
    assert "visible output" in out.split("LOGS", 1)[1]


def print_then_wait(text: str, flag: str) -> str:
    print(text, flush=True)
    deadline = time.monotonic() + 15
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "done"


def test_logs_of_a_running_warm_job_are_visible_before_it_ends(job_root, tmp_path):
    """`jobs logs NAME --follow` of a warm job shows what it printed while it runs."""
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 1).result() == 2
        f = ex.submit(print_then_wait, "printed while running", str(flag))
        wait_for(lambda: running(job_root, f.job_name), what="job running")
        time.sleep(0.5)
        try:
            seen = get_future(f.job_name).logs()
        finally:
            flag.touch()
        assert f.result(timeout=20) == "done"
    assert "printed while running" in seen


# ===========================================================================================
# 2. the content-addressed function bundle
# ===========================================================================================


def function_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("function"))


def evil_function_bundle(root: Path, marker: Path) -> Path:
    """A genuine function bundle of this client, for another function (one that creates the
    marker): what an attacker finds in the root."""
    remote(make_marker)(str(marker) + "-own-run")
    name = next(p for p in root.iterdir() if p.name.startswith("make-marker"))
    return name / "function.bundle"


def blocked_victim(ex: RemoteExecutor, flag: Path, fn: Any, *args: Any) -> tuple[Any, Any]:
    """A job queued behind another (max_parallel_jobs=1): its folder is written, it has not
    started, and the attacker has all the time needed to rewrite it."""
    blocker = ex.submit(wait_for_file, str(flag), "blocker")
    victim = ex.submit(fn, *args)
    return blocker, victim


def big_closure() -> Any:
    payload = os.urandom(2 << 20)  # the function's bundle is a folder (over 1 MiB)

    def big_function(x: int) -> int:
        return len(payload) + x

    return big_function


def test_a_function_bundle_file_planted_next_to_a_function_folder_is_refused(
    job_root, tmp_path, marker
):
    evil = evil_function_bundle(job_root, marker)
    flag = tmp_path / "go"
    fn = big_closure()
    with RemoteExecutor(max_parallel_jobs=1) as ex:
        blocker, victim = blocked_victim(ex, flag, fn, 1)
        folder = job_root / victim.job_name
        assert (folder / "function").is_dir(), function_files(folder)
        shutil.copyfile(evil, folder / "function.bundle")
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        try:
            value = victim.result(timeout=20)
        except (JobFailedError, IntegrityError):
            value = None
    assert value in (None, (2 << 20) + 1)
    # the marker fixture asserts make_marker never ran in the victim job


def small_function(x: int) -> int:
    return x * 3


def big_function_job(root: Path) -> Path:
    remote(big_closure())(0)
    return next(p for p in root.iterdir() if p.name.startswith("big-function"))


def test_a_function_folder_of_another_job_in_place_of_the_file_is_refused(job_root, tmp_path):
    other = big_function_job(job_root)
    flag = tmp_path / "go"
    with RemoteExecutor(max_parallel_jobs=1) as ex:
        blocker, victim = blocked_victim(ex, flag, small_function, 2)
        folder = job_root / victim.job_name
        (folder / "function.bundle").unlink()
        shutil.copytree(other / "function", folder / "function")
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        with pytest.raises((JobFailedError, IntegrityError)):
            victim.result(timeout=20)


def rewrite_in_place_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    data = data[: st.st_size].ljust(st.st_size, b"\0")
    with open(path, "r+b") as fh:  # the same inode: every hard link sees it
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def first_job(root: Path, prefix: str) -> Path:
    return next(p for p in sorted(root.iterdir()) if p.name.startswith(prefix))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            "flip-byte-same-size-same-mtime",
        ),
        "delete",
        "directory",
        "symlink-to-moved-copy",
        "fifo",
    ],
)
def test_tampering_with_an_earlier_jobs_function_bundle_does_not_break_the_next_call(
    job_root, tamper
):
    assert remote(small_function)(1) == 3
    old = first_job(job_root, "small-function") / "function.bundle"
    if tamper == "flip-byte-same-size-same-mtime":
        data = bytearray(old.read_bytes())
        data[len(data) // 2] ^= 0xFF
        rewrite_in_place_keeping_size_and_mtime(old, bytes(data))
    elif tamper == "delete":
        old.unlink()
    elif tamper == "directory":
        old.unlink()
        old.mkdir()
    elif tamper == "symlink-to-moved-copy":
        moved = old.parent.parent / "moved.bundle"
        os.replace(old, moved)
        old.symlink_to(moved)
    elif tamper == "fifo":
        old.unlink()
        os.mkfifo(old)
    # the same client calls the same function again: its new job must run (it wrote the
    # job; it should not have linked bytes an attacker changed)
    assert remote(small_function)(2) == 6
    newest = sorted(p for p in job_root.iterdir() if p.name.startswith("small-function"))[-1]
    assert not (newest / "function.bundle").is_symlink()


# ===========================================================================================
# 3. a first-time user doing ordinary things: the same function, changed between calls
# ===========================================================================================

SETTING = {"value": 1}
THRESHOLD = 1


def read_setting() -> int:
    return SETTING["value"]


def read_threshold() -> int:
    return THRESHOLD


def with_default(x: int = 1) -> int:
    return x


@pytest.mark.parametrize("warm", [False, True])
def test_a_global_changed_between_calls_is_seen_by_the_next_call(job_root, warm):
    global THRESHOLD
    run: Any
    ex = RemoteExecutor(**WARM) if warm else None
    run = (lambda fn: ex.submit(fn).result(timeout=20)) if ex else (lambda fn: remote(fn)())
    try:
        SETTING["value"], THRESHOLD = 1, 1
        assert run(read_setting) == 1
        assert run(read_threshold) == 1
        SETTING["value"], THRESHOLD = 2, 2  # same pickled size
        assert run(read_setting) == 2
        assert run(read_threshold) == 2
        with_default.__defaults__ = (7,)
        assert run(with_default) == 7
        with_default.__defaults__ = (8,)
        assert run(with_default) == 8
    finally:
        SETTING["value"], THRESHOLD = 1, 1
        with_default.__defaults__ = (1,)
        if ex:
            ex.shutdown()


def test_a_redefined_function_of_the_same_name_and_size_runs_its_new_code(job_root):
    ns: dict[str, Any] = {}
    exec("def same_name():\n    return 'old'\n", ns)
    assert remote(ns["same_name"])() == "old"
    exec("def same_name():\n    return 'new'\n", ns)
    assert remote(ns["same_name"])() == "new"
    with RemoteExecutor(**WARM) as ex:
        exec("def same_name():\n    return 'aaa'\n", ns)
        assert ex.submit(ns["same_name"]).result(timeout=20) == "aaa"
        exec("def same_name():\n    return 'bbb'\n", ns)
        assert ex.submit(ns["same_name"]).result(timeout=20) == "bbb"


def test_many_threads_of_one_client_calling_one_function(job_root):
    import traceback

    errors: list[str] = []
    results: dict[int, int] = {}

    def cold(i: int) -> None:
        try:
            results[i] = remote(add_one)(i)
        except BaseException:  # pragma: no cover - a finding
            errors.append(traceback.format_exc())

    assert remote(echo)(0) == 0  # the client key exists (its creation: the next test)
    with RemoteExecutor(max_parallel_jobs=3, keep_alive_period_in_seconds=30) as ex:
        warm_futures: dict[int, Any] = {}
        lock = threading.Lock()

        def warm(i: int) -> None:
            fut = ex.submit(add_one, i)
            with lock:
                warm_futures[i] = fut

        threads = [threading.Thread(target=cold, args=(i,)) for i in range(8)]
        threads += [threading.Thread(target=warm, args=(100 + i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        warm_results = {i: f.result(timeout=30) for i, f in warm_futures.items()}
    assert not errors, "\n".join(errors)
    assert results == {i: i + 1 for i in range(8)}
    assert warm_results == {100 + i: 101 + i for i in range(24)}
    # every job's function bundle is a regular file of the same bytes
    digests = {
        (p / "function.bundle").read_bytes()
        for p in job_root.iterdir()
        if p.is_dir() and p.name.startswith("add-one")
    }
    assert len(digests) == 1


def test_first_calls_from_many_threads_on_a_machine_without_a_client_key(
    job_root, tmp_path, monkeypatch
):
    import traceback

    errors: list[str] = []
    for round_ in range(6):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"fresh-cache-{round_}"))
        barrier = threading.Barrier(10)

        def call(i: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                assert remote(add_one)(i) == i + 1
            except BaseException:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=call, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        if errors:
            break
    assert not errors, errors[0]


# ===========================================================================================
# 4. jobs cancel against warm workers: only the job named, never its worker's other job
# ===========================================================================================


def warm_pair(ex: RemoteExecutor, root: Path, flag: Path) -> tuple[Any, Any]:
    """B finished in a warm worker, A now running in the same worker."""
    b = ex.submit(add_one, 1)
    assert b.result(timeout=20) == 2
    a = ex.submit(wait_for_file, str(flag), "A done")
    wait_for(lambda: running(root, a.job_name), what="A running")
    assert last_status(root / a.job_name)["pid"] == last_status(root / b.job_name)["pid"]
    return a, b


def test_cancel_of_a_finished_job_replaying_its_running_line_spares_the_workers_next_job(
    job_root, tmp_path
):
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        a, b = warm_pair(ex, job_root, flag)
        folder = job_root / b.job_name
        lines = status_lines(folder)
        running_line = next(x for x in lines if x.get("state") == "InProgress")
        with open(folder / "status.json", "a") as fh:
            fh.write(json.dumps(running_line) + "\n")
        cli("jobs", "cancel", b.job_name)
        time.sleep(0.3)
        flag.touch()
        assert a.result(timeout=20) == "A done"
        assert last_status(job_root / a.job_name)["state"] == "Completed"


def test_cancel_of_a_copy_of_a_running_warm_jobs_folder_spares_the_job(job_root, tmp_path):
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        a, _ = warm_pair(ex, job_root, flag)
        fake = job_root / (a.job_name[:-4] + "zzzz")
        shutil.copytree(job_root / a.job_name, fake)
        cli("jobs", "cancel", fake.name)
        time.sleep(0.3)
        flag.touch()
        assert a.result(timeout=20) == "A done"


def test_cancel_of_a_queued_job_whose_status_names_the_warm_worker_spares_the_running_one(
    job_root, tmp_path
):
    """C is queued behind A in the same executor; its status.json is made to claim A's
    worker. Cancelling C may stop C; it must not stop A."""
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        a, _ = warm_pair(ex, job_root, flag)
        c = ex.submit(add_one, 5)
        a_running = next(
            x for x in status_lines(job_root / a.job_name) if x.get("state") == "InProgress"
        )
        with open(job_root / c.job_name / "status.json", "a") as fh:
            fh.write(json.dumps(a_running) + "\n")
        cli("jobs", "cancel", c.job_name)
        time.sleep(0.3)
        flag.touch()
        assert a.result(timeout=20) == "A done"


def test_cancel_of_a_running_warm_job_stops_it_and_the_next_job_still_runs(job_root, tmp_path):
    """The control: the same command on the real job works."""
    flag = tmp_path / "never"
    with RemoteExecutor(**WARM) as ex:
        a, _ = warm_pair(ex, job_root, flag)
        out = cli("jobs", "cancel", a.job_name)
        assert out.returncode == 0, out.stderr
        from concurrent.futures import CancelledError

        with pytest.raises((CancelledError, JobFailedError)):
            a.result(timeout=20)
        assert wait_for(
            lambda: last_status(job_root / a.job_name)["state"] in ("Stopped", "Failed"),
            what="A stopped",
        )
        assert ex.submit(add_one, 9).result(timeout=20) == 10


# ===========================================================================================
# 5. status.json as a log: junk, partial lines, CRLF, growth, links to files outside
# ===========================================================================================

# "Unknown" is what the client reports for a status.json it cannot read (not in README's list
# of states, which list_futures(status=) accepts: noted in the report)
STATES = {"Pending", "InProgress", "Completed", "Failed", "Stopped", "Unknown"}


def finished_job(root: Path, fn: Any = add_one, arg: Any = 1) -> Path:
    before = set(root.iterdir()) if root.exists() else set()
    try:
        remote(fn)(arg)
    except ZeroDivisionError:
        pass
    (new,) = [p for p in root.iterdir() if p.is_dir() and p not in before]
    return new


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def unfinished(folder: Path) -> dict[str, Any]:
    """Turns a finished job into one whose recorded process is gone without an outcome:
    any client that looks at it settles it Failed (appending to status.json)."""
    for name in ("results.bundle", "exception.bundle"):
        (folder / name).unlink(missing_ok=True)
    for name in ("results", "exception"):
        shutil.rmtree(folder / name, ignore_errors=True)
    line = dict(next(x for x in status_lines(folder) if x.get("state") == "InProgress"))
    line["pid"] = dead_pid()
    return line


@pytest.mark.parametrize(
    "link",
    [
        "symlink",
        pytest.param(
            "hardlink",
        ),
    ],
)
def test_settling_a_dead_job_never_writes_through_status_json_to_a_file_outside(
    job_root, tmp_path, link
):
    folder = finished_job(job_root)
    line = unfinished(folder)
    outside = tmp_path / "victim.txt"
    outside.write_text(json.dumps(line) + "\n")
    before = outside.read_bytes()
    (folder / "status.json").unlink()
    if link == "symlink":
        (folder / "status.json").symlink_to(outside)
    else:
        os.link(outside, folder / "status.json")
    for look in (
        lambda: get_future(folder.name).status(),
        lambda: list(list_futures()),
        lambda: cli("jobs", "list"),
        lambda: get_future(folder.name).result(timeout=5),
    ):
        try:
            look()
        except Exception:
            pass
    after = outside.read_bytes()
    assert after == before, f"the client wrote through status.json outside the root: {after!r}"


def status_of(name: str) -> Any:
    return get_future(name).status()


@pytest.mark.parametrize(
    "shape",
    [
        "junk-before",
        "junk-between",
        pytest.param(
            "no-final-newline",
        ),
        "crlf",
        "nul-bytes-before",
        "binary",
        pytest.param(
            "completed-line-missing",
        ),
    ],
)
def test_odd_status_logs_give_a_state_or_a_typed_error(job_root, shape):
    folder = finished_job(job_root)
    lines = (folder / "status.json").read_bytes().splitlines()
    last = lines[-1]
    if shape == "junk-before":
        data = b"garbage{{{\n" + b"\n".join(lines) + b"\n"
    elif shape == "junk-between":
        data = lines[0] + b"\n" + b'{"state": \n' + b"\n".join(lines[1:]) + b"\n"
    elif shape == "no-final-newline":
        data = b"\n".join(lines)  # the last record is an append being written
    elif shape == "crlf":
        data = b"\r\n".join(lines) + b"\r\n"
    elif shape == "nul-bytes-before":
        data = b"\0" * 100_000 + b"\n" + last + b"\n"
    elif shape == "completed-line-missing":
        data = b"\n".join(lines[:-1]) + b"\n"
    else:
        data = os.urandom(70_000)
    (folder / "status.json").write_bytes(data)
    from remote_runtime import RemoteRuntimeError

    try:
        state = status_of(folder.name)
    except (RemoteRuntimeError, ValueError) as exc:
        assert "status.json" in str(exc)
        return
    assert state in STATES
    if shape in ("junk-before", "crlf", "nul-bytes-before"):
        assert state == "Completed"
    try:
        value = get_future(folder.name).result(timeout=5)
    except RemoteRuntimeError as exc:  # a folder it cannot read: said so, naming the file
        assert state == "Unknown" and "status.json" in str(exc), exc
        return
    assert value == 2


def test_a_huge_sparse_status_json_is_read_in_bounded_time_and_memory(job_root):
    folder = finished_job(job_root)
    last = (folder / "status.json").read_bytes().splitlines()[-1]
    with open(folder / "status.json", "r+b") as fh:
        fh.truncate(0)
        fh.seek(16 << 30)  # 16 GiB of holes
        fh.write(b"\n" + last + b"\n")
    from remote_runtime import RemoteRuntimeError

    start = time.monotonic()
    try:
        state = status_of(folder.name)
        assert state in STATES
    except (RemoteRuntimeError, ValueError) as exc:
        assert "status.json" in str(exc)
    assert time.monotonic() - start < 10


def test_a_status_json_that_keeps_growing_while_read_is_bounded(job_root):
    folder = finished_job(job_root)
    last = (folder / "status.json").read_bytes().splitlines()[-1]
    stop = threading.Event()

    def grow() -> None:
        with open(folder / "status.json", "ab") as fh:
            while not stop.is_set():
                fh.write((last + b"\n") * 2000)

    t = threading.Thread(target=grow, daemon=True)
    t.start()
    try:
        from remote_runtime import RemoteRuntimeError

        for _ in range(5):
            try:
                assert status_of(folder.name) in STATES
            except (RemoteRuntimeError, ValueError) as exc:
                assert "status.json" in str(exc)
    finally:
        stop.set()
        t.join(5)


def test_a_premature_completed_line_does_not_make_result_return_something_else(job_root, tmp_path):
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        f = ex.submit(wait_for_file, str(flag), "the real value")
        wait_for(lambda: running(job_root, f.job_name), what="running")
        folder = job_root / f.job_name
        fake = dict(last_status(folder), state="Completed", stage="done", exit_code=0)
        with open(folder / "status.json", "a") as fh:
            fh.write(json.dumps(fake) + "\n")
        time.sleep(0.3)
        threading.Timer(0.5, flag.touch).start()
        try:
            value = f.result(timeout=20)
        except Exception as exc:
            value = exc
    assert value == "the real value" or isinstance(value, Exception), value
    if isinstance(value, Exception):
        assert not isinstance(value, (JobTimeoutError,))


# ===========================================================================================
# 6. results in either form: planted next to each other, swapped, sparse, truncated
# ===========================================================================================


def big_value(seed: int) -> bytes:
    return bytes([seed]) * (2 << 20)  # over 1 MiB: a results/ folder


def test_a_results_bundle_file_planted_next_to_a_results_folder_is_refused_or_ignored(job_root):
    other = finished_job(job_root, add_one, 41)  # results.bundle of another job: 42
    victim = finished_job(job_root, big_value, 7)
    assert (victim / "results").is_dir()
    shutil.copyfile(other / "results.bundle", victim / "results.bundle")
    try:
        value = get_future(victim.name).result(timeout=5)
    except (IntegrityError, JobFailedError) as exc:
        assert victim.name in str(exc) or "results" in str(exc)
        return
    assert value == big_value(7)


def test_an_unsigned_results_bundle_planted_next_to_a_results_folder_is_refused_or_ignored(
    job_root,
):
    victim = finished_job(job_root, big_value, 7)
    (victim / "results.bundle").write_bytes(rc.dumps(b"forged"))
    try:
        value = get_future(victim.name).result(timeout=5)
    except (IntegrityError, JobFailedError):
        return
    assert value == big_value(7)


def test_a_results_folder_of_another_job_in_place_of_a_results_file_is_refused(job_root):
    other = finished_job(job_root, big_value, 9)
    victim = finished_job(job_root, add_one, 1)
    (victim / "results.bundle").unlink()
    shutil.copytree(other / "results", victim / "results")
    with pytest.raises((IntegrityError, JobFailedError)):
        get_future(victim.name).result(timeout=5)


def test_a_results_folder_planted_next_to_the_results_file_changes_nothing(job_root):
    other = finished_job(job_root, big_value, 9)
    victim = finished_job(job_root, add_one, 1)
    shutil.copytree(other / "results", victim / "results")
    assert get_future(victim.name).result(timeout=5) == 2


def test_the_jobs_own_results_turned_into_the_folder_form_give_the_same_value(job_root):
    victim = finished_job(job_root, add_one, 1)
    data = (victim / "results.bundle").read_bytes()
    (victim / "results.bundle").unlink()
    (victim / "results").mkdir()
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(victim / "results")
    try:
        assert get_future(victim.name).result(timeout=5) == 2
    except IntegrityError:
        pass  # refusing a form the job did not write is also safe


@pytest.mark.parametrize(
    "shape",
    [
        "sparse-huge",
        "truncated",
        "empty",
        "fifo",
        "directory",
        "hardlink-outside",
        "exception-file-too",
    ],
)
def test_a_damaged_results_file_is_a_typed_error_in_bounded_time(job_root, tmp_path, shape):
    victim = finished_job(job_root, add_one, 1)
    path = victim / "results.bundle"
    data = path.read_bytes()
    path.unlink()
    if shape == "sparse-huge":
        with open(path, "wb") as fh:
            fh.truncate(64 << 30)
    elif shape == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif shape == "empty":
        path.write_bytes(b"")
    elif shape == "fifo":
        os.mkfifo(path)
    elif shape == "directory":
        path.mkdir()
    elif shape == "hardlink-outside":
        outside = tmp_path / "outside.zip"
        outside.write_bytes(rc.dumps({"not": "the result"}))
        os.link(outside, path)
    elif shape == "exception-file-too":
        path.write_bytes(data)
        other = finished_job(job_root, divide_by_zero, 1)
        shutil.copyfile(other / "exception.bundle", victim / "exception.bundle")
    start = time.monotonic()
    from remote_runtime import RemoteRuntimeError

    try:
        value = get_future(victim.name).result(timeout=5)
    except (RemoteRuntimeError, rc.DeserializationError, IntegrityError) as exc:
        assert not isinstance(exc, ZeroDivisionError)
        value = exc
    assert time.monotonic() - start < 10
    if shape == "exception-file-too":
        assert value == 2 or isinstance(value, IntegrityError)
    else:
        assert not isinstance(value, int) and not isinstance(value, dict), value


def divide_by_zero(x: int) -> float:
    return x / 0


# ===========================================================================================
# 7. a queued warm job's folder rewritten: other arguments, other function, other job.json
# ===========================================================================================


def test_a_queued_warm_job_with_another_jobs_arguments_is_refused(job_root, tmp_path):
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 0).result(timeout=20) == 1  # warm
        blocker = ex.submit(wait_for_file, str(flag), "blocker")
        victim = ex.submit(echo, "mine")
        other = ex.submit(echo, "theirs")
        shutil.copyfile(
            job_root / other.job_name / "arguments.bundle",
            job_root / victim.job_name / "arguments.bundle",
        )
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        try:
            value = victim.result(timeout=20)
        except (IntegrityError, JobFailedError):
            value = None
        assert other.result(timeout=20) == "theirs"
    assert value in (None, "mine")


def test_a_queued_warm_job_with_another_functions_bundle_does_not_run_it(
    job_root, tmp_path, marker
):
    evil = evil_function_bundle(job_root, marker)
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 0).result(timeout=20) == 1
        blocker = ex.submit(wait_for_file, str(flag), "blocker")
        victim = ex.submit(make_marker_twin, str(marker))
        target = job_root / victim.job_name / "function.bundle"
        target.unlink()  # not in place: the file is shared with other jobs
        shutil.copyfile(evil, target)
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        with pytest.raises((IntegrityError, JobFailedError)):
            victim.result(timeout=20)


def make_marker_twin(path: str) -> str:
    """Takes the same argument as make_marker and does no harm."""
    return "harmless " + os.path.basename(path)


def test_another_jobs_job_json_does_not_bring_its_pre_execution_commands(job_root, tmp_path):
    pre_marker = tmp_path / "PRE-RAN"
    with RemoteExecutor(
        max_parallel_jobs=1,
        pre_execution_commands=[f"touch {pre_marker}-{{n}}".replace("{n}", "b")],
    ) as ex:
        b = ex.submit(add_one, 1)
        assert b.result(timeout=20) == 2
    assert Path(f"{pre_marker}-b").exists()
    os.unlink(f"{pre_marker}-b")
    flag = tmp_path / "go"
    with RemoteExecutor(max_parallel_jobs=1) as ex:
        blocker = ex.submit(wait_for_file, str(flag), "blocker")
        victim = ex.submit(add_one, 5)
        shutil.copyfile(job_root / b.job_name / "job.json", job_root / victim.job_name / "job.json")
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        try:
            value = victim.result(timeout=20)
        except (IntegrityError, JobFailedError):
            value = None
    assert not Path(f"{pre_marker}-b").exists(), "job B's pre-execution commands ran in job A"
    assert value in (None, 6)


# ===========================================================================================
# 8. a warm worker carries nothing of one job into the next
# ===========================================================================================


def dirty_the_worker(where: str) -> str:
    os.environ["LEFT_BY_JOB_1"] = "yes"
    os.chdir(where)
    sys.path.insert(0, where)
    import json as _json

    _json.LEFT_BY_JOB_1 = True  # type: ignore[attr-defined]
    return os.getcwd()


def look_at_the_worker() -> dict[str, Any]:
    import json as _json

    return {
        "env": os.environ.get("LEFT_BY_JOB_1"),
        "secret": os.environ.get("JOB1_SECRET"),
        "cwd_files": sorted(os.listdir(".")),
        "cwd": os.getcwd(),
        "json_attr": getattr(_json, "LEFT_BY_JOB_1", None),
    }


def test_environment_variables_of_one_executor_do_not_reach_the_next(job_root, tmp_path):
    with RemoteExecutor(**WARM, environment_variables={"JOB1_SECRET": "s3cr3t"}) as ex:
        assert ex.submit(add_one, 1).result(timeout=20) == 2
    with RemoteExecutor(**WARM) as ex:
        seen = ex.submit(look_at_the_worker).result(timeout=20)
    assert seen["secret"] is None


def dirtied_then_seen(tmp_path: Path) -> dict[str, Any]:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "someone-elses-file").write_text("x")
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(dirty_the_worker, str(elsewhere)).result(timeout=20) == str(elsewhere)
        seen: dict[str, Any] = ex.submit(look_at_the_worker).result(timeout=20)
    seen["elsewhere"] = str(elsewhere)
    return seen


def test_a_job_that_changes_cwd_does_not_change_the_next_jobs(job_root, tmp_path):
    seen = dirtied_then_seen(tmp_path)
    assert seen["cwd"] != seen["elsewhere"]
    assert seen["cwd_files"] == []


def test_a_job_that_changes_os_environ_does_not_change_the_next_jobs(job_root, tmp_path):
    seen = dirtied_then_seen(tmp_path)
    assert seen["env"] is None


# ===========================================================================================
# 9. what a job writes at its end, through links planted while it runs
# ===========================================================================================


@pytest.mark.parametrize("warm", [True, False])
@pytest.mark.parametrize(
    "plant",
    [
        "stdout-hardlink",
        "stderr-symlink",
        "logs-dir-symlink",
        "results-hardlink",
        "results-dir-symlink",
        "status-hardlink",
    ],
)
def test_links_planted_while_a_job_runs_never_make_it_write_outside_the_root(
    job_root, tmp_path, warm, plant, request
):
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    victim = outside_dir / "victim.txt"
    victim.write_text("precious\n")
    flag = tmp_path / "go"
    settings = WARM if warm else {"max_parallel_jobs": 1}
    with RemoteExecutor(**settings) as ex:
        if warm:
            assert ex.submit(add_one, 0).result(timeout=20) == 1
        f = ex.submit(print_then_wait, "output of the job", str(flag))
        wait_for(lambda: running(job_root, f.job_name), what="running")
        folder = job_root / f.job_name
        logs = folder / "logs"
        if plant == "stdout-hardlink":
            logs.mkdir(exist_ok=True)
            (logs / "stdout.log").unlink(missing_ok=True)
            os.link(victim, logs / "stdout.log")
        elif plant == "stderr-symlink":
            logs.mkdir(exist_ok=True)
            (logs / "stderr.log").unlink(missing_ok=True)
            (logs / "stderr.log").symlink_to(victim)
        elif plant == "logs-dir-symlink":
            shutil.rmtree(logs, ignore_errors=True)
            logs.symlink_to(outside_dir)
        elif plant == "results-hardlink":
            os.link(victim, folder / "results.bundle")
        elif plant == "results-dir-symlink":
            (folder / "results").symlink_to(outside_dir)
        elif plant == "status-hardlink":
            text = (folder / "status.json").read_bytes()
            victim.write_bytes(text)
            (folder / "status.json").unlink()
            os.link(victim, folder / "status.json")
        before = {p.name: p.read_bytes() for p in outside_dir.iterdir()}
        flag.touch()
        try:
            f.result(timeout=20)
        except Exception:
            pass  # refusing to finish is safe; writing outside is not
    after = {p.name: p.read_bytes() for p in outside_dir.iterdir()}
    assert after == before, f"the job wrote outside the root: {set(after) ^ set(before) or after}"


@pytest.mark.parametrize("warm", [True, False])
@pytest.mark.parametrize("plant", ["stdout-hardlink", "stderr-hardlink", "status-hardlink"])
def test_links_planted_before_a_queued_job_starts_never_make_it_write_outside_the_root(
    job_root, tmp_path, warm, plant, request
):
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    victim = outside_dir / "victim.txt"
    victim.write_text("precious\n")
    flag = tmp_path / "go"
    settings = WARM if warm else {"max_parallel_jobs": 1}
    with RemoteExecutor(**settings) as ex:
        blocker = ex.submit(wait_for_file, str(flag), "blocker")
        f = ex.submit(print_secret, "output of the job")
        folder = job_root / f.job_name
        if plant == "status-hardlink":
            (folder / "status.json").unlink(missing_ok=True)
            os.link(victim, folder / "status.json")
        else:
            (folder / "logs").mkdir(exist_ok=True)
            os.link(victim, folder / "logs" / f"{plant.split('-')[0]}.log")
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        try:
            f.result(timeout=20)
        except Exception:
            pass  # refusing to run is safe; writing outside is not
    assert victim.read_text() == "precious\n", "the job wrote outside the root"


# ===========================================================================================
# 10. more warm-worker and cancel tricks
# ===========================================================================================


def test_a_queued_jobs_job_json_renamed_to_another_job_does_not_redirect_cancel(job_root, tmp_path):
    """The attacker rewrites the unsigned fields of A's job.json to name B; while A runs,
    `jobs cancel B` must not stop A."""
    flag = tmp_path / "go"
    flag_a = tmp_path / "go-a"
    with RemoteExecutor(max_parallel_jobs=1, keep_alive_period_in_seconds=30) as ex:
        assert ex.submit(add_one, 0).result(timeout=20) == 1
        blocker = ex.submit(wait_for_file, str(flag), "blocker")
        a = ex.submit(wait_for_file, str(flag_a), "A done")
        b = ex.submit(add_one, 7)
        spec_path = job_root / a.job_name / "job.json"
        spec = json.loads(spec_path.read_text())
        spec["name"] = b.job_name
        spec_path.write_text(json.dumps(spec))
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        try:
            wait_for(lambda: running(job_root, a.job_name), limit=5, what="A running")
        except AssertionError:
            return  # A refused to start with a changed job.json: safe
        cli("jobs", "cancel", b.job_name)
        time.sleep(0.3)
        flag_a.touch()
        assert a.result(timeout=20) == "A done"


def test_a_symlinked_job_folder_is_never_settled_through_the_link(job_root, tmp_path):
    folder = finished_job(job_root)
    line = unfinished(folder)
    outside = tmp_path / "outside-job"
    shutil.copytree(folder, outside)
    (outside / "status.json").write_text(json.dumps(line) + "\n")
    before = (outside / "status.json").read_bytes()
    link = job_root / (folder.name[:-4] + "lnk0")
    link.symlink_to(outside, target_is_directory=True)
    for look in (
        lambda: list(list_futures()),
        lambda: cli("jobs", "list"),
        lambda: get_future(link.name).status(),
    ):
        try:
            look()
        except Exception:
            pass
    assert (outside / "status.json").read_bytes() == before


def ignore_sigterm_and_print(seconds: float) -> str:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
    time.sleep(seconds)
    return "too late"


def test_a_warm_job_that_ignores_sigterm_is_still_stopped_at_its_max_runtime(job_root):
    with RemoteExecutor(
        max_parallel_jobs=1, keep_alive_period_in_seconds=30, max_runtime_in_seconds=2
    ) as ex:
        assert ex.submit(add_one, 1).result(timeout=20) == 2
        f = ex.submit(ignore_sigterm_and_print, 60)
        with pytest.raises(JobTimeoutError):
            f.result(timeout=25)
        f2 = ex.submit(print_and_return, "after")
        assert f2.result(timeout=20) == "after"
    assert "ignoring SIGTERM" in log_text(job_root / f.job_name, "stdout")
    assert log_text(job_root / f2.job_name, "stdout") == "after\n"


def leave_a_child_printing(stop: str) -> str:
    subprocess.Popen(
        [
            "sh",
            "-c",
            f"while [ ! -e '{stop}' ]; do echo CHILD-LEAK; echo CHILD-ERR >&2; sleep 0.01; done",
        ],
    )
    return "returned"


def test_a_child_process_left_by_a_warm_job_does_not_write_into_the_next_jobs_logs(
    job_root, stop_flag
):
    with RemoteExecutor(**WARM) as ex:
        f1 = ex.submit(leave_a_child_printing, str(stop_flag))
        assert f1.result(timeout=20) == "returned"
        f2 = ex.submit(quiet_sleeper, 1.0)
        assert f2.result(timeout=20) == "job2"
    j2 = job_root / f2.job_name
    assert "CHILD" not in log_text(j2, "stdout") + log_text(j2, "stderr")


def wait_then_die(flag: str) -> str:
    deadline = time.monotonic() + 15
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@pytest.mark.parametrize("how", ["get_future", "list_futures"])
def test_a_symlinked_job_folder_does_not_kill_the_watcher_of_other_futures(job_root, tmp_path, how):
    """get_future on a planted symlinked job folder must fail with a typed error, and must
    not break the futures of genuine jobs (one whose process dies is still settled Failed)."""
    folder = finished_job(job_root)
    line = unfinished(folder)
    outside = tmp_path / "outside-job"
    shutil.copytree(folder, outside)
    (outside / "status.json").write_text(json.dumps(line) + "\n")
    link = job_root / (folder.name[:-4] + "lnk0")
    link.symlink_to(outside, target_is_directory=True)
    caught: list[BaseException] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: caught.append(args.exc_value)  # type: ignore[assignment]
    flag = tmp_path / "die"
    planted_error: Any = None
    try:
        with RemoteExecutor(max_parallel_jobs=1) as ex:
            genuine = ex.submit(wait_then_die, str(flag))
            wait_for(lambda: running(job_root, genuine.job_name), what="running")
            reattached = get_future(genuine.job_name)
            try:
                if how == "get_future":
                    get_future(link.name).result(timeout=3)
                else:
                    for fut in list_futures():
                        fut.done()
                    time.sleep(1)
                    planted_error = RemoteRuntimeError("not looked at")
            except Exception as exc:
                planted_error = exc
            flag.touch()
            with pytest.raises(JobFailedError):
                reattached.result(timeout=8)  # the control settles it in about a second
            with pytest.raises(JobFailedError):
                genuine.result(timeout=8)
    finally:
        threading.excepthook = old_hook
    assert not caught, f"a background thread died: {caught!r}"
    assert isinstance(planted_error, RemoteRuntimeError), repr(planted_error)


def test_control_a_reattached_future_of_a_job_that_dies_is_settled_failed(job_root, tmp_path):
    """The control of the test above, without the planted folder."""
    flag = tmp_path / "die"
    with RemoteExecutor(max_parallel_jobs=1) as ex:
        genuine = ex.submit(wait_then_die, str(flag))
        wait_for(lambda: running(job_root, genuine.job_name), what="running")
        reattached = get_future(genuine.job_name)
        flag.touch()
        with pytest.raises(JobFailedError):
            reattached.result(timeout=20)
        with pytest.raises(JobFailedError):
            genuine.result(timeout=20)


# ===========================================================================================
# 11. reading a damaged folder from the command line; one function in two roots
# ===========================================================================================


@pytest.mark.parametrize(
    "shape",
    [
        "fifo",
        "sparse-huge",
        "symlink-outside",
    ],
)
def test_jobs_logs_and_cancel_on_planted_log_and_status_files_are_bounded(
    job_root, tmp_path, shape
):
    folder = finished_job(job_root, print_and_return, "hello")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    for path in (folder / "logs" / "stdout.log", folder / "status.json"):
        path.unlink()
        if shape == "fifo":
            os.mkfifo(path)
        elif shape == "sparse-huge":
            with open(path, "wb") as fh:
                fh.truncate(32 << 30)
        else:
            path.symlink_to(secret)
    for args in (
        ("jobs", "logs", folder.name),
        ("jobs", "cancel", folder.name),
        ("jobs", "show", folder.name),
    ):
        out = cli(*args, timeout=15)  # raises TimeoutExpired if it blocks
        assert "TOP-SECRET-CONTENT" not in out.stdout + out.stderr
        assert "Traceback" not in out.stderr, out.stderr
    try:
        text = get_future(folder.name).logs()
    except RemoteRuntimeError:
        text = ""
    assert "TOP-SECRET-CONTENT" not in text
    assert len(text) < (64 << 20)


def test_one_function_called_in_two_roots_does_not_share_an_inode_between_them(job_root, tmp_path):
    """A private root and a shared one on the same file system: the shared root's writer
    must not get a way to change a file of the private root."""
    shared = tmp_path / "shared-root"
    assert remote(small_function)(1) == 3
    assert remote(small_function, s3_root_uri=str(shared))(1) == 3
    private_file = next(job_root.iterdir()) / "function.bundle"
    shared_file = next(shared.iterdir()) / "function.bundle"
    assert private_file.stat().st_ino != shared_file.stat().st_ino


def test_future_logs_of_a_huge_sparse_log_file_are_bounded(job_root):
    folder = finished_job(job_root, print_and_return, "hello")
    path = folder / "logs" / "stdout.log"
    path.unlink()
    with open(path, "wb") as fh:
        fh.truncate(32 << 30)
    try:
        text = get_future(folder.name).logs()
    except RemoteRuntimeError:
        return
    assert len(text) < (64 << 20)


# ===========================================================================================
# 12. ordinary endings of a warm job: sys.exit, os._exit, fork
# ===========================================================================================


def exit_with(how: str, code: int) -> str:
    print(f"exiting by {how}", flush=True)
    if how == "sys.exit":
        sys.exit(code)
    os._exit(code)


@pytest.mark.parametrize("how", ["sys.exit", "os._exit"])
def test_a_warm_job_that_exits_fails_with_its_code_and_the_next_job_runs(job_root, how):
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 0).result(timeout=20) == 1
        f = ex.submit(exit_with, how, 3)
        with pytest.raises(JobFailedError) as info:
            f.result(timeout=20)
        assert getattr(info.value, "exit_code", None) == 3
        assert [ex.submit(add_one, i).result(timeout=20) for i in range(3)] == [1, 2, 3]
    assert "exiting by" in log_text(job_root / f.job_name, "stdout")


def fork_and_return() -> tuple[int, int]:
    child = os.fork()
    if child == 0:
        time.sleep(0.2)  # the child returns too, into whatever called the function
    return (os.getpid(), child)


def test_a_warm_job_that_forks_leaves_no_second_worker_behind(job_root):
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 0).result(timeout=20) == 1
        f = ex.submit(fork_and_return)
        pid, child = f.result(timeout=20)
        later = [ex.submit(add_one, i) for i in range(6)]
        assert [x.result(timeout=20) for x in later] == [i + 1 for i in range(6)]
    # the parent's view: the job's own process answered, and its child is gone
    assert child != 0, "the forked child's return value became the job's result"
    time.sleep(0.5)
    try:
        os.kill(child, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    except PermissionError:
        alive = True
    if alive:  # a zombie is reaped, not alive
        with open(f"/proc/{child}/stat") as fh:
            alive = fh.read().split()[2] != "Z"
    assert not alive, f"the job's forked child {child} outlived the job"
    pids = {last_status(job_root / x.job_name)["pid"] for x in later}
    assert pids <= {pid}, pids


def big_argument_len(data: bytes) -> int:
    return len(data)


@pytest.mark.parametrize("planted", ["another-jobs-file", "unsigned-file"])
def test_an_arguments_file_planted_next_to_a_queued_warm_jobs_arguments_folder(
    job_root, tmp_path, planted
):
    flag = tmp_path / "go"
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 0).result(timeout=20) == 1
        blocker = ex.submit(wait_for_file, str(flag), "blocker")
        victim = ex.submit(big_argument_len, b"v" * (2 << 20))
        other = ex.submit(big_argument_len, b"small")
        folder = job_root / victim.job_name
        assert (folder / "arguments").is_dir()
        if planted == "another-jobs-file":
            shutil.copyfile(
                job_root / other.job_name / "arguments.bundle", folder / "arguments.bundle"
            )
        else:
            (folder / "arguments.bundle").write_bytes(rc.dumps(((b"x",), {})))
        flag.touch()
        assert blocker.result(timeout=20) == "blocker"
        try:
            value = victim.result(timeout=20)
        except (IntegrityError, JobFailedError):
            value = None
        assert other.result(timeout=20) == 5
    assert value in (None, 2 << 20)


def test_cancel_racing_the_end_of_a_warm_job_never_stops_the_workers_next_job(job_root):
    """`jobs cancel A` issued while A is ending, with B queued behind it in the same worker:
    A's durations are swept around the command's start-up time so that A ends while the
    command reads the claim log and signals; B must always complete."""
    exe = Path(sys.executable).parent / "remote-runtime"
    with RemoteExecutor(**WARM) as ex:
        assert ex.submit(add_one, 0).result(timeout=20) == 1
        start = time.monotonic()
        cli("jobs", "list", "--limit", "1")
        latency = time.monotonic() - start
        for i in range(12):
            a = ex.submit(sleep_then, latency * (0.85 + 0.025 * i), "A")
            b = ex.submit(sleep_then, 0.3, "B")
            wait_for(lambda a=a: running(job_root, a.job_name), what="A running")
            subprocess.run(
                [str(exe), "jobs", "cancel", a.job_name],
                capture_output=True,
                timeout=20,
                env=os.environ.copy(),
            )
            assert b.result(timeout=20) == "B", f"B stopped by the cancel of A (round {i})"


def configure_logging_and_log(text: str) -> str:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    logging.getLogger("redteam").info(text)
    print(text + "-via-dunder", file=sys.__stdout__, flush=True)
    return text


def only_log(text: str) -> str:
    import logging

    logging.getLogger("redteam").info(text)
    return text


def test_logging_configured_by_one_warm_job_writes_the_next_jobs_records_to_its_own_logs(
    job_root,
):
    with RemoteExecutor(**WARM) as ex:
        f1 = ex.submit(configure_logging_and_log, "JOB1-RECORD")
        assert f1.result(timeout=20) == "JOB1-RECORD"
        f2 = ex.submit(only_log, "JOB2-RECORD")
        assert f2.result(timeout=20) == "JOB2-RECORD"
        f3 = ex.submit(add_one, 1)
        assert f3.result(timeout=20) == 2
    j1, j2 = job_root / f1.job_name, job_root / f2.job_name
    assert "JOB1-RECORD" in log_text(j1, "stderr")
    assert "JOB1-RECORD-via-dunder" in log_text(j1, "stdout")
    assert "JOB2-RECORD" not in log_text(j1, "stderr") + log_text(j1, "stdout")
    assert "JOB2-RECORD" in log_text(j2, "stderr")


@pytest.mark.parametrize("warm", [True, False])
@pytest.mark.parametrize(
    "prefix",
    [b'{"junk": ', b'{"state": "Failed", "error": {"message": "forged"}, "x": '],
    ids=["junk-prefix", "failed-wrapper"],
)
def test_a_partial_line_appended_while_a_job_runs_does_not_lose_its_result(
    job_root, tmp_path, warm, prefix
):
    """The attacker appends bytes without a newline; the job's next record is appended to
    them (one line: junk + record, or a forged record wrapping the job's own)."""
    flag = tmp_path / "go"
    settings = WARM if warm else {"max_parallel_jobs": 1}
    with RemoteExecutor(**settings) as ex:
        if warm:
            assert ex.submit(add_one, 0).result(timeout=20) == 1
        f = ex.submit(wait_for_file, str(flag), "the real value")
        wait_for(lambda: running(job_root, f.job_name), what="running")
        with open(job_root / f.job_name / "status.json", "ab") as fh:
            fh.write(prefix)
        flag.touch()
        try:
            value = f.result(timeout=10)
        except Exception as exc:
            value = exc
    assert value == "the real value", repr(value)


def wait_then_big(flag: str, seed: int) -> bytes:
    wait_for_file(flag, None)
    return big_value(seed)


@pytest.mark.parametrize("warm", [True, False])
@pytest.mark.parametrize(
    "planted",
    [
        pytest.param(
            "unsigned-results-file",
        ),
        "other-jobs-exception-file",
    ],
)
def test_a_file_planted_while_a_job_runs_does_not_shadow_its_genuine_result(
    job_root, tmp_path, warm, planted
):
    other = finished_job(job_root, divide_by_zero, 1)
    flag = tmp_path / "go"
    settings = WARM if warm else {"max_parallel_jobs": 1}
    with RemoteExecutor(**settings) as ex:
        if warm:
            assert ex.submit(add_one, 0).result(timeout=20) == 1
        f = ex.submit(wait_then_big, str(flag), 5)
        wait_for(lambda: running(job_root, f.job_name), what="running")
        folder = job_root / f.job_name
        if planted == "unsigned-results-file":
            (folder / "results.bundle").write_bytes(rc.dumps(b"forged"))
        else:
            shutil.copyfile(other / "exception.bundle", folder / "exception.bundle")
        flag.touch()
        try:
            value = f.result(timeout=15)
        except Exception as exc:
            value = exc
    assert not isinstance(value, ZeroDivisionError), "another job's exception was raised"
    assert value != b"forged"
    assert value == big_value(5), repr(value)[:300]
