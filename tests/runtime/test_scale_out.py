"""The job root on a real S3 server (rclone serve s3 on 127.0.0.1), and jobs on a real
Ray cluster (a Ray head on 127.0.0.1) with their folders on that server."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import numpy as np
import pytest

from remote_runtime import RemoteExecutor, ServiceError, get_future, list_futures, remote
from servers import status_record

FAST_FAIL = {
    "config_kwargs": {"connect_timeout": 2, "read_timeout": 10, "retries": {"max_attempts": 1}}
}


@pytest.fixture
def s3_root(s3_server, monkeypatch):
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REMOTE_RUNTIME_S3_ROOT_URI", f"s3://{s3_server.bucket}/{prefix}")
    return s3_server.data / s3_server.bucket / prefix


def matrix_multiply(a, b):
    return np.matmul(a, b)


def divide(x, y):
    print(f"dividing {x} by {y}")
    return x / y


def test_remote_call_with_the_root_on_s3(s3_root):
    a = np.array([[1, 0], [0, 1]])
    assert np.array_equal(remote(stream_logs=False)(matrix_multiply)(a, np.array([1, 2])), [1, 2])
    d = remote(stream_logs=False)(divide)
    assert d(10, 5) == 2
    with pytest.raises(ZeroDivisionError):
        d(10, 0)
    jobs = sorted(p.name for p in s3_root.iterdir())
    assert len(jobs) == 3
    done = next(
        j for j in jobs if j.startswith("divide") and (s3_root / j / "results.bundle").exists()
    )
    status = status_record(s3_root / done)
    assert status["state"] == "Completed"
    assert not (s3_root / done / "results").exists()  # a small value: one object
    assert "dividing 10 by 5" in (s3_root / done / "logs" / "stdout.log").read_text()


def test_listing_reattach_cli_and_gc_on_s3(s3_root, s3_server):
    with RemoteExecutor(max_parallel_jobs=2, job_name_prefix="s3sweep", stream_logs=False) as ex:
        names = [ex.submit(divide, 10, i).job_name for i in (1, 2)]
        for n in names:
            get_future(n).result()
    assert sorted(f.job_name for f in list_futures("s3sweep")) == sorted(names)
    assert get_future(names[1]).result() == 5
    cli = [sys.executable, "-m", "remote_runtime"]
    out = subprocess.run(
        [*cli, "jobs", "list", "--prefix", "s3sweep"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and all(n in out.stdout for n in names), out.stderr
    out = subprocess.run(
        [*cli, "jobs", "show", names[0]], capture_output=True, text=True, timeout=120
    )
    assert "results.bundle" in out.stdout, out.stderr
    out = subprocess.run(
        [*cli, "gc", "--older-than", "0s"], capture_output=True, text=True, timeout=120
    )
    assert "removed 2 job(s)" in out.stdout, out.stderr
    assert not s3_root.exists() or not any(s3_root.iterdir())


def test_kms_key_applies_to_every_upload(s3_root):
    from remote_runtime.client import store_for
    from remote_runtime.settings import resolve_settings

    store = store_for(resolve_settings({"s3_kms_key": "alias/jobs"}))
    assert store.fs.s3_additional_kwargs == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/jobs",
    }
    assert remote(s3_kms_key="alias/jobs", stream_logs=False)(divide)(9, 3) == 3


def shape_of(a):
    return a.shape


def test_server_stopped_in_the_middle_of_an_upload(s3_root, s3_server):
    big = np.ones((48 << 20) // 8)
    f = remote(storage_options=FAST_FAIL, stream_logs=False)(shape_of)
    stopper = threading.Timer(0.3, s3_server.stop)
    stopper.start()
    try:
        t = time.monotonic()
        with pytest.raises(ServiceError, match="could not be reached"):
            for _ in range(20):  # until the stop lands in the middle of one
                f(big)
        assert time.monotonic() - t < 120
    finally:
        stopper.join()
        s3_server.start()
    for job in s3_root.glob("*"):
        if not (job / "job.json").exists():  # the job whose upload was cut: nothing visible
            assert (
                not (job / "arguments" / "manifest.json").exists()
                or not (job / "function.bundle").exists()
            )
    assert list(list_futures()) == [g for g in list_futures() if g.status() == "Completed"]
    assert f(big) == big.shape  # the same call, once the server is back


# -- Ray ------------------------------------------------------------------------------------------


@pytest.fixture
def on_ray(ray_head, s3_root, monkeypatch):
    monkeypatch.setenv("REMOTE_RUNTIME_BACKEND", "ray")
    monkeypatch.setenv("REMOTE_RUNTIME_RAY_ADDRESS", ray_head.address)
    for k, v in ray_head.env.items():
        monkeypatch.setenv(k, v)
    return ray_head


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value, time.time()


def test_examples_on_ray(on_ray, s3_root):
    a = np.array([[2, 0], [0, 2]])
    assert np.array_equal(remote(stream_logs=False)(matrix_multiply)(a, np.array([1, 2])), [2, 4])
    d = remote(stream_logs=False)(divide)
    assert d(10, 5) == 2
    with pytest.raises(ZeroDivisionError) as info:
        d(10, 0)
    assert "x / y" in info.value.remote_traceback
    job = next(
        p
        for p in s3_root.iterdir()
        if p.name.startswith("divide") and (p / "exception.bundle").exists()
    )
    status = status_record(job)
    assert status["backend"]["name"] == "ray" and status["state"] == "Failed"
    assert "dividing 10 by 0" in (job / "logs" / "stdout.log").read_text()


def test_executor_on_ray_respects_parallelism(on_ray):
    with RemoteExecutor(max_parallel_jobs=2, stream_logs=False) as ex:
        futures = [ex.submit(sleep_then, 1.0, i) for i in range(4)]
        results = [f.result(timeout=300) for f in futures]
    assert [v for v, _ in results] == [0, 1, 2, 3]
    assert all(f.status() == "Completed" for f in futures)


def test_cancel_and_reattach_on_ray(on_ray, s3_server, ray_head):
    with RemoteExecutor(max_parallel_jobs=1, stream_logs=False) as ex:
        long = ex.submit(sleep_then, 120, "never")
        deadline = time.monotonic() + 120
        while long.status() != "InProgress" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert long.cancel()
        with pytest.raises(cf.CancelledError):
            long.result()
        assert long.status() == "Stopped"
        done = ex.submit(divide, 8, 2)
        assert done.result(timeout=300) == 4
    script = textwrap.dedent(
        f"""
        from remote_runtime import get_future
        print(get_future({done.job_name!r}).result())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "4.0"


def six_version():
    import six

    return six.__version__


def test_dependencies_become_the_ray_runtime_env(on_ray, tmp_path):
    # an old pin: the job must see exactly it, whatever the cluster has installed
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.15.0\n")
    assert remote(dependencies=str(req), stream_logs=False)(six_version)() == "1.15.0"
