"""RemoteExecutor: a real concurrent.futures.Executor over jobs, with warm workers."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import remote_codecs as rc
from remote_runtime import Future, RemoteExecutor, SerializationError, get_future, list_futures
from servers import live_children, plant_bundle, status_record


def square(x):
    return x * x


def fail(x):
    raise KeyError(x)


def sleep_and_log(path, seconds, tag):
    start = time.time()
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(json.dumps([tag, start, time.time()]) + "\n")
    return tag


def test_submit_map_and_shutdown():
    with RemoteExecutor(max_parallel_jobs=2, stream_logs=False) as ex:
        fut = ex.submit(square, 7)
        assert isinstance(fut, cf.Future) and isinstance(fut, Future)
        assert fut.result(timeout=60) == 49
        assert fut.status() == "Completed" and fut.job_name.startswith("square-")
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
        with pytest.raises(KeyError):
            ex.submit(fail, "k").result()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)


def test_bad_parallelism_and_the_seed_alias():
    with pytest.raises(ValueError, match="max_parallel_jobs"):
        RemoteExecutor(max_parallel_jobs=0)
    with RemoteExecutor(
        max_parallel_job=2, stream_logs=False
    ) as ex:  # the seed document's spelling
        assert ex.max_parallel_jobs == 2
        assert ex.submit(square, 3).result() == 9


def test_futures_work_with_the_standard_tools():
    with RemoteExecutor(max_parallel_jobs=2, stream_logs=False) as ex:
        futures = [ex.submit(square, i) for i in range(4)]
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=60)) == [0, 1, 4, 9]
        done, not_done = cf.wait([ex.submit(square, 5)], timeout=60)
        assert len(done) == 1 and not not_done
        seen = []
        f = ex.submit(square, 6)
        f.add_done_callback(lambda fut: seen.append(fut.result()))
        f.result()
        time.sleep(0.05)
        assert seen == [36]

        async def main():
            a = await ex.submit(square, 8)
            b = await asyncio.wrap_future(ex.submit(square, 9))
            return a, b

        assert asyncio.run(main()) == (64, 81)


def test_parallelism_is_never_exceeded_and_fifo(tmp_path):
    log = tmp_path / "runs.jsonl"
    with RemoteExecutor(max_parallel_jobs=2, stream_logs=False) as ex:
        futures = [ex.submit(sleep_and_log, str(log), 0.4, i) for i in range(6)]
        assert [f.result() for f in futures] == list(range(6))
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    events = sorted([(s, 1) for _, s, _ in runs] + [(e, -1) for _, _, e in runs])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    with RemoteExecutor(max_parallel_jobs=1, stream_logs=False) as ex:
        log.unlink()
        for f in [ex.submit(sleep_and_log, str(log), 0.05, i) for i in range(4)]:
            f.result()
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [tag for tag, _, _ in sorted(starts, key=lambda r: r[1])] == [0, 1, 2, 3]


def test_cancel_pending_and_running(tmp_path, job_root):
    marker = tmp_path / "ran"
    with RemoteExecutor(max_parallel_jobs=1, stream_logs=False) as ex:
        running = ex.submit(sleep_and_log, str(tmp_path / "long"), 30, "long")
        queued = ex.submit(sleep_and_log, str(marker), 0, "queued")
        assert queued.cancel()
        deadline = time.monotonic() + 30
        while running.status() != "InProgress" and time.monotonic() < deadline:
            time.sleep(0.05)
        t = time.monotonic()
        assert running.cancel(), (running.exception(), running.logs())
        assert time.monotonic() - t < 15
        with pytest.raises(cf.CancelledError):
            running.result()
        assert running.cancelled() and running.status() == "Stopped"
        assert queued.status() == "Stopped"
    time.sleep(0.3)
    assert not marker.exists()
    pid = status_record(job_root / running.job_name).get("pid")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_store_failure_while_settling_a_stopped_job_leaves_the_executor_working(
    tmp_path, monkeypatch
):
    """Settling a stopped job reads and writes its status; the store failing right then
    (a truncated response, seen in CI) must end that future, not the executor's thread:
    the next job still runs."""
    from remote_runtime.errors import ServiceError

    settle = Future._cancel

    def flaky(self, reason):
        if threading.current_thread().name.startswith("RemoteExecutor"):
            raise ServiceError("the job store could not be reached (a truncated response)")
        return settle(self, reason)

    monkeypatch.setattr(Future, "_cancel", flaky)
    with RemoteExecutor(max_parallel_jobs=1, stream_logs=False) as ex:
        running = ex.submit(sleep_and_log, str(tmp_path / "long"), 30, "long")
        deadline = time.monotonic() + 30
        while running.status() != "InProgress" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.cancel(), (running.exception(), running.status(), running.logs())
        with pytest.raises(cf.CancelledError):
            running.result(timeout=30)
        assert ex.submit(square, 7).result(timeout=60) == 49


def test_shutdown_cancel_futures_stops_what_is_queued(tmp_path):
    ex = RemoteExecutor(max_parallel_jobs=1, stream_logs=False)
    first = ex.submit(sleep_and_log, str(tmp_path / "a"), 0.5, "a")
    rest = [ex.submit(sleep_and_log, str(tmp_path / "b"), 0, i) for i in range(3)]
    deadline = time.monotonic() + 30
    while not first.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result() == "a"
    assert all(f.cancelled() for f in rest)
    assert not (tmp_path / "b").exists()


def die_if(x):
    if x == 2:
        os._exit(9)
    return x


def test_bad_input_and_dying_workers_fail_only_their_future():
    with RemoteExecutor(max_parallel_jobs=2, stream_logs=False) as ex:
        with pytest.raises(SerializationError, match=r"args\[0\]"):
            ex.submit(square, threading.Lock())
        futures = [ex.submit(die_if, i) for i in range(4)]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result())
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes == [0, 1, "JobFailedError", 3]


def worker_info(_=None):
    import numpy

    return os.getpid(), id(numpy), os.environ.get("FLAVOUR")


def test_warm_workers_are_reused_per_environment():
    with RemoteExecutor(
        max_parallel_jobs=1, keep_alive_period_in_seconds=30, stream_logs=False
    ) as ex:
        first = ex.submit(worker_info).result()
        second = ex.submit(worker_info).result()
    assert first[:2] == second[:2]  # same process, numpy imported once
    with RemoteExecutor(
        keep_alive_period_in_seconds=30, environment_variables={"FLAVOUR": "b"}, stream_logs=False
    ) as ex:
        other = ex.submit(worker_info).result()
    assert other[0] != first[0] and other[2] == "b"


def leave_files_and_a_child(tag):
    """Leaves a file (and a folder) in its working directory and a process running."""
    seen = sorted(os.listdir("."))
    with open(f"left-by-{tag}.txt", "w") as f:
        f.write(tag)
    os.mkdir(f"folder-{tag}")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return os.getpid(), seen, child.pid


def test_a_warm_workers_next_job_starts_in_an_empty_folder_with_no_leftover_process():
    with RemoteExecutor(
        max_parallel_jobs=1, keep_alive_period_in_seconds=30, stream_logs=False
    ) as ex:
        first = ex.submit(leave_files_and_a_child, "a").result()
        second = ex.submit(leave_files_and_a_child, "b").result()
        third = ex.submit(leave_files_and_a_child, "c").result()
    assert first[0] == second[0] == third[0]  # one warm worker ran the three jobs
    assert first[1] == second[1] == third[1] == []  # nothing left by the job before
    if sys.platform.startswith("linux"):  # (elsewhere only the process group is stopped)
        for _, _, pid in (first, second, third):
            assert not os.path.exists(f"/proc/{pid}"), f"the child {pid} of a finished job runs on"


def test_warm_jobs_still_have_folders_logs_and_exceptions(job_root):
    with RemoteExecutor(keep_alive_period_in_seconds=30, stream_logs=False) as ex:
        assert ex.submit(square, 3).result() == 9
        f = ex.submit(fail, "x")
        with pytest.raises(KeyError):
            f.result()
        assert "fail" in f.exception().remote_traceback
    for name in os.listdir(job_root):
        status = status_record(job_root / name)
        assert status["state"] in ("Completed", "Failed") and status["worker"] is True


def test_idle_workers_exit_after_the_keep_alive_period():
    with RemoteExecutor(keep_alive_period_in_seconds=1, stream_logs=False) as ex:
        pid = ex.submit(worker_info).result()[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_workers_do_not_outlive_a_killed_client(tmp_path):
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            """
        import os, sys, time
        from remote_runtime import RemoteExecutor

        def pid():
            return os.getpid()

        ex = RemoteExecutor(max_parallel_jobs=2, keep_alive_period_in_seconds=600, stream_logs=False)
        print(ex.submit(pid).result(), flush=True)
        time.sleep(600)
        """
        )
    )
    client = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker_pid = int(client.stdout.readline())
    os.kill(worker_pid, 0)
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"worker {worker_pid} outlived its client")


def test_reattach_from_a_new_process(tmp_path, job_root):
    with RemoteExecutor(max_parallel_jobs=2, job_name_prefix="sweep", stream_logs=False) as ex:
        names = [ex.submit(square, i).job_name for i in range(3)]
        bad = ex.submit(fail, "boom").job_name
        for name in names:
            get_future(name).result()
    script = textwrap.dedent(
        f"""
        from remote_runtime import get_future, list_futures
        print([get_future(n).result() for n in {names!r}])
        print([f.job_name for f in list_futures("sweep")] == sorted({[*names, bad]!r}))
        print([f.job_name for f in list_futures("sweep", status="Failed")])
        try:
            get_future({bad!r}).result()
        except KeyError as exc:
            print("KeyError", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == ["[0, 1, 4]", "True", str([bad]), "KeyError 'boom'"]


def test_listing_does_not_decode_results(job_root):
    with RemoteExecutor(stream_logs=False) as ex:
        name = ex.submit(square, 4).job_name
    plant_bundle(job_root / name, "results", "forged", key=b"attacker")
    (future,) = list(list_futures(name))
    assert future.done() and future.status() == "Completed"
    with pytest.raises(rc.IntegrityError):
        future.result()
    with pytest.raises(LookupError, match="no job named"):
        get_future("no-such-job-20260101-000000-000-abcdef")


def test_reattach_to_a_running_job_waits_for_it(tmp_path):
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(sleep_and_log, str(tmp_path / "x"), 1.0, "late")
        again = get_future(f.job_name)
        assert not again.done()
        assert again.result(timeout=60) == "late"
        assert cf.wait([get_future(f.job_name)], timeout=30).done


def test_many_jobs_leave_nothing_behind():
    threads_before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    children_before = live_children()
    with RemoteExecutor(
        max_parallel_jobs=2, keep_alive_period_in_seconds=1, stream_logs=False
    ) as ex:
        assert sum(ex.map(square, range(200))) == sum(i * i for i in range(200))
        assert live_children() - children_before  # the warm workers
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        threading.active_count() > threads_before or live_children() - children_before
    ):
        time.sleep(0.1)
    assert threading.active_count() <= threads_before
    assert not live_children() - children_before
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_map_progress_and_timeout(capsys):
    with RemoteExecutor(max_parallel_jobs=2, stream_logs=False) as ex:
        assert list(ex.map(square, range(4), progress=True)) == [0, 1, 4, 9]
        err = capsys.readouterr().err
        assert "4/4 done: 4 completed, 0 failed, 0 stopped" in err
        with pytest.raises(cf.TimeoutError):
            list(ex.map(sleep_and_log, ["/dev/null"], [5], ["t"], timeout=0.5))


def prefix():
    return sys.prefix


def test_a_venv_and_its_base_interpreter_never_share_a_warm_worker(job_root):
    """A venv's python is a link to its base interpreter, but another environment."""
    base = os.path.realpath(sys.executable)
    if base == os.path.abspath(sys.executable) or sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a venv")
    with RemoteExecutor(keep_alive_period_in_seconds=30, stream_logs=False) as ex:
        assert ex.submit(prefix).result() == sys.prefix  # a warm worker of the venv
    with RemoteExecutor(keep_alive_period_in_seconds=30, stream_logs=False, python=base) as ex:
        try:
            got = ex.submit(prefix).result()
        except Exception:  # the base lacks what a job needs: refused, never the venv's
            return
    assert got == sys.base_prefix
