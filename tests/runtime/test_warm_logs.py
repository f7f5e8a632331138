"""A warm job's output: spooled by its worker while it runs, in the job's logs/ when it
ends, and not even a logs/ folder for a job that printed nothing."""

from __future__ import annotations

import os
import sys
import time

import pytest

from remote_runtime import JobFailedError, JobTimeoutError, RemoteExecutor, get_future

pytestmark = pytest.mark.timeout(120)


def silent(x):
    return x


def chatty(x):
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    return x


def dies_after_printing():
    print("said before dying", flush=True)
    os.kill(os.getpid(), 9)  # the warm worker itself


def prints_then_waits(flag):
    print("started", flush=True)
    while not os.path.exists(flag):
        time.sleep(0.02)
    print("finishing", flush=True)
    return 1


def prints_then_hangs():
    print("before the limit", flush=True)
    time.sleep(60)


def _warm(**settings):
    return RemoteExecutor(
        max_parallel_jobs=1, keep_alive_period_in_seconds=30, stream_logs=False, **settings
    )


def test_silent_warm_jobs_have_no_logs_and_chatty_ones_have_theirs(job_root):
    with _warm() as ex:
        quiet = [ex.submit(silent, i) for i in range(3)]
        loud = [ex.submit(chatty, i) for i in range(3)]
        assert [f.result() for f in quiet + loud] == [0, 1, 2, 0, 1, 2]
    for f in quiet:
        assert not (job_root / f.job_name / "logs").exists()
        assert get_future(f.job_name).logs() == ""
    for i, f in enumerate(loud):  # each job's own output, none of another's
        logs = job_root / f.job_name / "logs"
        assert (logs / "stdout.log").read_text() == f"out {i}\n"
        assert (logs / "stderr.log").read_text() == f"err {i}\n"
        assert f"out {i}" in get_future(f.job_name).logs()


def test_a_running_warm_jobs_output_streams_before_it_ends(job_root, tmp_path, capsys):
    flag = tmp_path / "flag"
    with RemoteExecutor(keep_alive_period_in_seconds=30, stream_logs=True) as ex:
        ex.submit(silent, 0).result()  # the worker is warm
        future = ex.submit(prints_then_waits, str(flag))
        seen = ""
        deadline = time.monotonic() + 30
        while "started" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
            seen += capsys.readouterr().out
        assert f"[{future.job_name}] started" in seen and not future.done()
        flag.touch()
        assert future.result() == 1
    seen += capsys.readouterr().out
    assert seen.count("started") == 1 and f"[{future.job_name}] finishing" in seen
    logs = job_root / future.job_name / "logs" / "stdout.log"
    assert logs.read_text() == "started\nfinishing\n"


def test_what_a_job_printed_before_its_worker_died_is_in_its_logs(job_root):
    with _warm() as ex:
        future = ex.submit(dies_after_printing)
        with pytest.raises(JobFailedError):
            future.result()
    logs = job_root / future.job_name / "logs" / "stdout.log"
    assert "said before dying" in logs.read_text()
    assert not list((job_root.parent / "cache" / "remote-runtime" / "work").glob("*.stdout"))


def test_what_a_job_printed_before_its_time_ran_out_is_in_its_logs(job_root):
    with _warm(max_runtime_in_seconds=2) as ex:
        future = ex.submit(prints_then_hangs)
        with pytest.raises(JobTimeoutError):
            future.result()
    logs = job_root / future.job_name / "logs" / "stdout.log"
    assert "before the limit" in logs.read_text()
