"""Integrity both ways, interpreter versions, crashes, timeouts, retries, interrupts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import remote_codecs as rc
from bundles import rewrite_member
from remote_runtime import (
    DeserializationError,
    IntegrityError,
    JobFailedError,
    JobTimeoutError,
    RuntimeEnvironmentError,
    remote,
)
from remote_runtime.client import Job, prepare_job
from remote_runtime.settings import resolve_settings
from servers import plant_bundle, remove_bundle, status_record


def add(x, y):
    return x + y


def _rewrite_member(path, member, change):
    """Rewrite one file inside a single-file bundle (a zip) with ``change(bytes)``."""
    path.write_bytes(rewrite_member(path.read_bytes(), member, change))


def _flip_last_byte(data):
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@pytest.mark.parametrize("bundle", ["function", "arguments"])
def test_tampered_inputs_make_the_job_refuse(job_root, bundle):
    settings = resolve_settings({"stream_logs": False})
    paths, key = prepare_job(add, (1, 2), {}, settings)
    path = job_root / paths.name / f"{bundle}.bundle"
    if bundle == "arguments":  # a JSON bundle: rewrite the value in the manifest

        def change(data):
            m = json.loads(data)
            m["skeleton"]["value"]["args"] = [100, 200]
            return json.dumps(m).encode()

        _rewrite_member(path, "manifest.json", change)
    else:
        _rewrite_member(path, "skeleton.pkl", _flip_last_byte)
    job = Job(paths, key, settings)
    job.launch()
    with pytest.raises(DeserializationError, match="refused its inputs"):
        job.result()
    assert job.status()["exit_code"] == 4


def test_forged_arguments_signed_with_another_key_are_refused(job_root):
    settings = resolve_settings({"stream_logs": False})
    paths, key = prepare_job(add, (1, 2), {}, settings)
    plant_bundle(
        job_root / paths.name, "arguments", {"args": [100, 200], "kwargs": {}}, key=b"attacker"
    )
    job = Job(paths, key, settings)
    job.launch()
    with pytest.raises(IntegrityError, match="signature"):
        job.result()


def test_tampered_execution_record_is_refused(job_root):
    settings = resolve_settings({"stream_logs": False})
    paths, key = prepare_job(add, (1, 2), {}, settings)
    spec_path = job_root / paths.name / "job.json"
    spec = json.loads(spec_path.read_text())
    spec["execution"]["pre_execution_commands"] = ["touch pwned"]
    spec_path.write_text(json.dumps(spec))
    job = Job(paths, key, settings)
    job.launch()
    with pytest.raises(IntegrityError, match="execution record"):
        job.result()


def test_tampered_results_make_the_caller_refuse(job_root):
    settings = resolve_settings({"stream_logs": False})
    paths, key = prepare_job(add, ("a" * 10, "b"), {}, settings)
    job = Job(paths, key, settings)
    job.launch()
    assert job.wait(60)
    folder = job_root / paths.name
    results = plant_bundle(folder, "results", "forged")  # unsigned
    with pytest.raises(IntegrityError, match="not signed"):
        job.outcome()
    plant_bundle(folder, "results", "forged", key=b"attacker")
    with pytest.raises(IntegrityError, match="signature mismatch"):
        job.outcome()
    remove_bundle(folder, "results")  # the folder form too
    rc.save("forged", paths.bundle("results"), key=b"attacker")
    with pytest.raises(IntegrityError, match="signature mismatch"):
        job.outcome()
    assert not results.exists()


def _interpreter(version: str) -> str | None:
    out = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYENV_VERSION": version},
        check=False,
    )
    path = out.stdout.strip()
    return path if out.returncode == 0 and path and os.path.exists(path) else None


def test_python_version_mismatch_is_an_environment_error():
    other = next(
        (p for v in ("3.12.1", "3.10.13", "3.13.0") if (p := _interpreter(v)) and "3.11" not in v),
        None,
    )
    if other is None or shutil.which("pyenv") is None:
        pytest.skip("no second Python interpreter on this machine")
    f = remote(python=other, stream_logs=False)(add)
    with pytest.raises(RuntimeEnvironmentError) as info:
        f(1, 2)
    message = str(info.value)
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" in message
    assert any(v in message for v in ("3.10", "3.12", "3.13"))


def exit_hard(code):
    print("about to exit", flush=True)
    os._exit(code)


def kill_self():
    print("about to be killed", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def test_os_exit_and_signals_fail_fast_with_log_tail():
    t = time.monotonic()
    with pytest.raises(JobFailedError, match=r"exited with code 3[\s\S]*about to exit") as info:
        remote(stream_logs=False)(exit_hard)(3)
    assert info.value.exit_code == 3
    with pytest.raises(JobFailedError, match=r"SIGKILL[\s\S]*about to be killed"):
        remote(stream_logs=False)(kill_self)()
    with pytest.raises(JobFailedError, match="exited with code 0 before writing a result"):
        remote(stream_logs=False)(exit_hard)(0)
    assert time.monotonic() - t < 30


def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def test_max_runtime_stops_the_job(job_root):
    t = time.monotonic()
    with pytest.raises(JobTimeoutError, match="sleeper-.*max_runtime_in_seconds=1"):
        remote(max_runtime_in_seconds=1, stream_logs=False)(sleeper)(60)
    assert time.monotonic() - t < 20
    (job,) = job_root.iterdir()
    status = status_record(job)
    assert status["state"] == "Failed" and status["timed_out"]


def test_a_warm_worker_stops_a_short_job_after_long_ones(job_root):
    """One warm worker runs jobs with different limits: the timer that slept until the
    long jobs' deadline still stops a later job with a shorter one, on time."""
    long = remote(keep_alive_period_in_seconds=30, max_runtime_in_seconds=3600, stream_logs=False)
    short = remote(keep_alive_period_in_seconds=30, max_runtime_in_seconds=2, stream_logs=False)
    assert [long(sleeper)(0) for _ in range(3)] == [0, 0, 0]
    workers = {status_record(j)["pid"] for j in job_root.iterdir()}
    t = time.monotonic()
    with pytest.raises(JobTimeoutError, match="max_runtime_in_seconds=2"):
        short(sleeper)(60)
    assert time.monotonic() - t < 20
    (stopped,) = [j for j in job_root.iterdir() if status_record(j).get("timed_out")]
    assert workers == {status_record(stopped)["pid"]}  # (one warm worker ran them all)
    assert long(sleeper)(0) == 0  # and the next long job is not stopped by the old timer


def test_retries_only_infrastructure_failures(tmp_path, job_root):
    counter = tmp_path / "attempts"
    wrapper = tmp_path / "flaky-python"
    wrapper.write_text(
        textwrap.dedent(
            f"""\
        #!/bin/sh
        n=$(cat {counter} 2>/dev/null || echo 0)
        echo $((n + 1)) > {counter}
        if [ "$n" = "0" ]; then echo "worker lost" >&2; kill -9 $$; fi
        exec {sys.executable} "$@"
        """
        )
    )
    wrapper.chmod(0o755)
    assert remote(python=str(wrapper), max_retry_attempts=2, stream_logs=False)(add)(2, 3) == 5
    assert counter.read_text().strip() == "2"
    counter.write_text("0")
    with pytest.raises(JobFailedError, match="SIGKILL"):
        remote(python=str(wrapper), max_retry_attempts=1, stream_logs=False)(add)(2, 3)
    # a user exception is never retried
    calls = tmp_path / "calls"

    def failing():
        with open(calls, "a") as f:
            f.write("x")
        raise ValueError("user error")

    with pytest.raises(ValueError):
        remote(max_retry_attempts=3, stream_logs=False)(failing)()
    assert calls.read_text() == "x"


def test_interrupting_the_caller_leaves_the_job_running(tmp_path, job_root):
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            """
        import time
        from remote_runtime import remote

        @remote
        def slow():
            time.sleep(3)
            return "done"

        print("calling", flush=True)
        slow()
        """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "calling"
    deadline = time.monotonic() + 20
    while not (job_root.exists() and list(job_root.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    (job,) = job_root.iterdir()
    assert f"job {job.name} keeps running" in err and "get_future" in err
    deadline = time.monotonic() + 30
    while status_record(job)["state"] != "Completed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status_record(job)["state"] == "Completed"
    from remote_runtime.client import recall_key

    data = (job / "results.bundle").read_bytes()
    assert rc.loads(data, key=recall_key(job.name)) == "done"
