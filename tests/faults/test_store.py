"""Faults of the job store (a real S3 server, rclone serve s3 on 127.0.0.1): stopped,
paused, killed, slow, missing bucket, wrong credentials, at each stage of a job. Each
case ends in a final state and a typed error (or the value) within a generous bound."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from remote_runtime import (
    JobFailedError,
    RemoteExecutor,
    ServiceError,
    get_future,
    list_futures,
    remote,
)
from remote_runtime.client import Job, prepare_job
from remote_runtime.settings import resolve_settings
from servers import pause, resume, status_record

BOUND = 90  # seconds: a generous bound on any wait for a first error


def wait_for(predicate, seconds: float = 60, what: str = "a condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def status_of(server, name: str) -> dict:
    try:
        return status_record(server.root / name)
    except (OSError, ValueError):
        return {}


def mark_then_return(marker: str, seconds: float, n: int):
    with open(marker, "w") as f:
        f.write("running")
    time.sleep(seconds)
    print("returning the value")
    return np.arange(n)


def add(a, b):
    return a + b


@pytest.mark.parametrize("outage", [6, pytest.param(45, marks=pytest.mark.slow)])
def test_store_stopped_while_the_job_runs_and_writes_its_result(own_s3, tmp_path, outage):
    """The job keeps its value in memory and retries its final writes until the store is
    back: the caller gets the value, the folder says Completed and holds the logs."""
    marker = tmp_path / "running"
    t = time.monotonic()
    with RemoteExecutor(max_parallel_jobs=1) as ex:
        future = ex.submit(mark_then_return, str(marker), 1.0, 4 << 20)
        wait_for(marker.exists, BOUND, "the function to start")
        own_s3.stop()
        time.sleep(outage)  # the result is written while the store is away
        own_s3.start()
        value = future.result(timeout=BOUND + outage)
    assert np.array_equal(value, np.arange(4 << 20))
    assert time.monotonic() - t < BOUND + outage
    status = status_of(own_s3, future.job_name)
    assert status["state"] == "Completed"
    assert (
        "returning the value" in (own_s3.root / future.job_name / "logs" / "stdout.log").read_text()
    )


def test_store_gone_longer_than_the_final_write_budget_ends_failed(own_s3, tmp_path):
    """Past final_write_retry_in_seconds the job gives up; the caller gets a ServiceError
    naming the job and the store; once the store is back the folder is settled Failed and
    get_future(name).result() raises JobFailedError instead of waiting forever."""
    marker = tmp_path / "running"
    with RemoteExecutor(max_parallel_jobs=1, final_write_retry_in_seconds=2) as ex:
        future = ex.submit(mark_then_return, str(marker), 0.5, 10)
        name = future.job_name
        wait_for(marker.exists, BOUND, "the function to start")
        own_s3.stop()
        t = time.monotonic()
        with pytest.raises(ServiceError) as info:
            future.result(timeout=BOUND)
        assert time.monotonic() - t < BOUND
    message = str(info.value)
    assert name in message and "s3://jobs/" in message and "get_future" in message
    own_s3.start()
    t = time.monotonic()
    with pytest.raises(JobFailedError, match="without recording an outcome"):
        get_future(name).result(timeout=BOUND)
    assert time.monotonic() - t < BOUND
    assert status_of(own_s3, name)["state"] == "Failed"
    assert [f.status() for f in list_futures()] == ["Failed"]


def test_store_killed_as_the_job_starts(own_s3):
    """The job cannot write its first status; the caller's error names the job and the
    store; after the store returns, the job is settled Failed, not Pending forever."""
    settings = resolve_settings({})
    paths, key = prepare_job(add, (1, 2), {}, settings)
    own_s3.stop()
    job = Job(paths, key, settings)
    t = time.monotonic()
    with pytest.raises(ServiceError, match=paths.name):
        job.launch()
        job.result()
    assert time.monotonic() - t < BOUND
    own_s3.start()
    with pytest.raises(JobFailedError):
        get_future(paths.name).result(timeout=BOUND)
    assert status_of(own_s3, paths.name)["state"] == "Failed"


def shape_of(a):
    return a.shape


def test_store_paused_at_the_argument_upload(own_s3):
    """A store that accepts connections and answers nothing (SIGSTOP) when the arguments
    are uploaded: a ServiceError naming the store, bounded by the user's timeouts (s3fs
    does not multiply botocore's attempts), and no job left in a non-final state.
    (A pause that lands while a request body is being sent is not bounded yet: aiohttp has
    no write timeout; see the README.)"""
    fast = {
        "config_kwargs": {"connect_timeout": 2, "read_timeout": 3, "retries": {"max_attempts": 2}}
    }
    f = remote(storage_options=fast)(shape_of)
    assert f(np.ones(4)) == (4,)
    pause(own_s3)
    t = time.monotonic()
    try:
        with pytest.raises(ServiceError, match=r"s3://jobs/.*did not answer"):
            f(np.ones(1 << 10))
        elapsed = time.monotonic() - t
    finally:
        resume(own_s3)
    assert elapsed < BOUND
    assert all(g.status() in ("Completed", "Failed", "Stopped") for g in list_futures())
    assert f(np.ones(8)) == (8,)  # the same call, once the server answers again


@pytest.mark.slow
def test_slow_endpoint_fails_within_a_minute_with_default_settings(own_s3, slow_proxy, monkeypatch):
    """An endpoint that accepts connections and answers after 30 s: with no storage
    options at all, the first error comes within about a minute (825 s before)."""
    proxy = slow_proxy(own_s3.port, delay=30)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    t = time.monotonic()
    with pytest.raises(ServiceError, match="did not answer|could not be reached"):
        remote(add)(1, 2)
    assert time.monotonic() - t < BOUND


def test_missing_bucket_is_a_service_error_naming_it(own_s3, monkeypatch):
    monkeypatch.setenv("REMOTE_RUNTIME_S3_ROOT_URI", "s3://no-such-bucket/jobs")
    with pytest.raises(ServiceError, match="bucket 'no-such-bucket'.*does not exist"):
        remote(add)(1, 2)
    with pytest.raises(ServiceError, match="no-such-bucket"):
        list(list_futures())
    with pytest.raises(ServiceError, match="no-such-bucket"):
        get_future("add-20250101-000000-000-abcdef")


def test_wrong_credentials_say_so(own_s3, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ServiceError, match="refused the credentials.*AWS_ACCESS_KEY_ID"):
        remote(add)(1, 2)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(ServiceError, match="refused the credentials"):
        remote(add)(1, 2)


def test_store_down_while_the_result_is_read(own_s3):
    """A completed job whose result cannot be read now: the error names the job and says
    the outcome stays in the store (never to run the job again); it loads once back."""
    with RemoteExecutor(max_parallel_jobs=1) as ex:
        name = ex.submit(add, 20, 22).job_name
    wait_for(lambda: status_of(own_s3, name).get("state") == "Completed", BOUND, "the job")
    own_s3.stop()
    t = time.monotonic()
    with pytest.raises(ServiceError) as info:
        get_future(name).result(timeout=BOUND)
    assert time.monotonic() - t < BOUND
    message = str(info.value)
    assert name in message and "s3://jobs/" in message
    assert "try again" not in message and "submit" not in message
    own_s3.start()
    assert get_future(name).result(timeout=BOUND) == 42


def test_gc_removes_parts_left_by_cut_uploads(own_s3):
    """Parts without a manifest (an upload cut short) are removed once older than the
    grace period: a folder that never got its job.json, and a bundle of an ended job."""
    import s3fs

    assert remote(add)(1, 1) == 2
    (done,) = [p.name for p in own_s3.root.iterdir()]
    fs = s3fs.S3FileSystem()
    root = f"jobs/{own_s3.root.name}"
    fs.pipe_file(f"{root}/add-20240101-000000-000-abcdef/arguments/0.npy", b"\0" * 4096)
    fs.pipe_file(f"{root}/{done}/exception/0.bin", b"\0" * 4096)
    cli = [sys.executable, "-m", "remote_runtime", "gc", "--older-than", "7d"]

    def gc(*extra):
        out = subprocess.run([*cli, *extra], capture_output=True, text=True, timeout=BOUND)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "removed 0 job(s) and 0 cut upload(s)" in gc("--grace", "1h")  # too recent
    assert "removed 0 job(s) and 2 cut upload(s)" in gc("--grace", "0s")
    fs.invalidate_cache()
    assert not fs.exists(f"{root}/add-20240101-000000-000-abcdef")
    assert not fs.exists(f"{root}/{done}/exception")
    assert get_future(done).result() == 2  # the finished job is kept whole
