"""The remote-runtime command, run as users run it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from remote_runtime import RemoteExecutor
from servers import status_record


def cli(*args, check=True):
    out = subprocess.run(
        [sys.executable, "-m", "remote_runtime", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def shout(word):
    print("shouting", word)
    return word.upper()


def fail(word):
    raise ValueError(word)


def slow(seconds):
    time.sleep(seconds)
    return seconds


@pytest.fixture
def jobs():
    with RemoteExecutor(max_parallel_jobs=2, job_name_prefix="cli", stream_logs=False) as ex:
        ok = ex.submit(shout, "hi")
        bad = ex.submit(fail, "nope")
        ok.result()
        bad.exception()
    return ok.job_name, bad.job_name


def test_list_show_logs_result(jobs):
    ok, bad = jobs
    listing = cli("jobs", "list", "--prefix", "cli").stdout
    assert ok in listing and bad in listing and "Completed" in listing and "Failed" in listing
    failed = cli("jobs", "list", "--status", "Failed").stdout
    assert bad in failed and ok not in failed
    show = cli("jobs", "show", ok).stdout
    assert (
        "test_cli.shout" in show
        and "results.bundle" in show
        and "arguments.bundle" in show
        and "skeleton" in show
    )
    assert "shouting hi" in cli("jobs", "logs", ok).stdout
    assert cli("jobs", "result", ok).stdout.strip() == "'HI'"
    out = cli("jobs", "result", bad, check=False)
    assert out.returncode == 1 and "ValueError: nope" in out.stderr
    assert (
        "no job named"
        in cli("jobs", "show", "nothing-20260101-000000-000-aaaaaa", check=False).stderr
    )


def test_logs_follow_and_cancel(tmp_path):
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(slow, 60)
        deadline = time.monotonic() + 30
        while f.status() != "InProgress" and time.monotonic() < deadline:
            time.sleep(0.05)
        out = cli("jobs", "cancel", f.job_name).stdout
        assert "Stopped" in out
        assert f.status() == "Stopped"
        follow = subprocess.run(
            [sys.executable, "-m", "remote_runtime", "jobs", "logs", "-f", f.job_name],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert follow.returncode == 0


def test_gc(jobs, job_root):
    ok, bad = jobs
    out = cli("gc", "--older-than", "1h", "--dry-run").stdout
    assert "would remove 0 job(s)" in out
    old = time.time() - 3 * 86400
    for name in (ok, bad):
        path = job_root / name / "status.json"
        status = status_record(path.parent)
        status["ended"] = old
        path.write_text(json.dumps(status))
    out = cli("gc", "--older-than", "2d", "--dry-run").stdout
    assert f"would remove {ok}" in out and "would remove 2 job(s)" in out
    assert (job_root / ok).exists()
    out = cli("gc", "--older-than", "2d").stdout
    assert "removed 2 job(s)" in out
    assert not (job_root / ok).exists() and not (job_root / bad).exists()
    assert cli("gc", "--older-than", "soon", check=False).returncode == 2


def test_config_shows_sources(monkeypatch):
    monkeypatch.setenv("REMOTE_RUNTIME_MAX_RETRY_ATTEMPTS", "3")
    out = cli("config").stdout
    assert "max_retry_attempts" in out and "env REMOTE_RUNTIME_MAX_RETRY_ATTEMPTS" in out
    assert "s3_root_uri" in out and os.environ["REMOTE_RUNTIME_S3_ROOT_URI"] in out


def test_list_newest_first_with_limit_status_and_error_columns(jobs):
    ok, bad = jobs
    with RemoteExecutor(job_name_prefix="cli", stream_logs=False) as ex:
        newest = ex.submit(shout, "last").job_name
    lines = cli("jobs", "list", "--prefix", "cli").stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "STATUS"] and "ERROR" in lines[0]
    assert lines[1].startswith(newest)
    (row,) = [line for line in lines if line.startswith(bad)]
    assert "ValueError: nope" in row
    limited = cli("jobs", "list", "--limit", "1").stdout.splitlines()
    assert len(limited) == 2 and limited[1].startswith(newest)
    failed = cli("jobs", "list", "--status", "failed").stdout
    assert bad in failed and ok not in failed
    out = cli("jobs", "list", "--status", "done", check=False)
    assert out.returncode == 2 and "not a job state" in out.stderr


def test_closed_pipe_ends_quietly(jobs, job_root):
    import shutil

    ok, _ = jobs
    for i in range(700):  # more rows than a pipe holds
        shutil.copytree(job_root / ok, job_root / f"copy-20260101-000000000-{i:04d}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "remote_runtime", "jobs", "list", "--limit", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "Broken pipe" not in err, err
