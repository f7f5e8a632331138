"""The job folder's records are never trusted to choose a process to kill, and a job
leaves no process behind.

The attacker can write the job root (status.json included) but holds no key and runs
nothing as the user: everything they know about a process they read from /proc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from remote_runtime import RemoteExecutor, get_future
from servers import alive, eventually_none_running, running_with, status_record

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


def cli(*args):
    """`remote-runtime ...` as a user runs it, in a session of its own: if it ever
    signalled its own process group, only it would die (and the test would fail)."""
    return subprocess.run(
        [sys.executable, "-m", "remote_runtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )


def proc_identity(pid):
    """What anyone can read about a process: its start time, the boot id, the host."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    fields = text[text.rfind(")") + 2 :].split()
    return {"pid": pid, "pid_start": int(fields[19]), "boot_id": boot, "host": os.uname().nodename}


def plant_status(root, name, **fields):
    path = root / name / "status.json"
    status = status_record(path.parent)
    status.update(fields)
    path.write_text(json.dumps(status))


def finished_job():
    with RemoteExecutor(stream_logs=False, job_name_prefix="victimjob") as ex:
        f = ex.submit(pow, 2, 5)
        assert f.result() == 32
    return f.job_name


def wait_until_running(future, seconds=60.0):
    deadline = time.monotonic() + seconds
    while future.status() != "InProgress" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = future.describe()["status"]
    while status.get("stage") != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = future.describe()["status"]
    return status


def nap(seconds):
    time.sleep(seconds)
    return seconds


def refused_or_settled(code: int, out: str, err: str) -> bool:
    """Cancel signalled nothing and said why: it refused (the recorded process is not
    proven to be the job's), or the client first settled the job as Failed because its
    recorded process is not the job's (issue 13: a job whose process is gone is Failed)."""
    return (code == 1 and "not stopped" in err) or (code == 0 and "already ended" in out)


# -- cancel signals only the job's own process ----------------------------------------------------


def test_cancel_refuses_a_planted_pid_of_another_process(job_root):
    name = finished_job()
    victim = subprocess.Popen(["sleep", "4501"], start_new_session=True)  # leads its own group
    try:
        plant_status(job_root, name, state="InProgress", **proc_identity(victim.pid))
        out = cli("jobs", "cancel", name)
        assert victim.poll() is None, "cancel killed a process that status.json merely named"
        assert refused_or_settled(out.returncode, out.stdout, out.stderr), out
        if out.returncode == 1:
            assert "sleep 4501" in out.stderr
            assert "InProgress" in (job_root / name / "status.json").read_text()
        # the same through the Python API (a re-attached future)
        get_future(name).cancel()
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


@pytest.fixture
def victim_job():
    """A job that has ended: its folder is the attacker's to write."""
    return finished_job()


@pytest.fixture
def signals(monkeypatch, victim_job):
    """Every signal this process sends, recorded instead of sent. The planted pids below
    (0, 1, -1, our own group) make an unchecked ``killpg`` signal this command's group or,
    for 1, every process the user may signal (``killpg(1)`` is ``kill(-1)``): such cases
    run in this process with signalling intercepted, so a regression fails the test
    instead of killing the machine's processes."""
    import signal

    sent = []
    for module, name in ((os, "kill"), (os, "killpg"), (signal, "pidfd_send_signal")):
        if hasattr(module, name):
            monkeypatch.setattr(
                module, name, lambda *a, _name=name: sent.append((_name, *a)), raising=True
            )
    return sent


def cancel_in_process(name, capsys):
    from remote_runtime.cli import main

    code = main(["jobs", "cancel", name])
    return code, capsys.readouterr()


@pytest.mark.parametrize("pid", ["0", 0, -1, "-1", True, 1, "1", 1.0, [1], {"pid": 1}])
def test_cancel_refuses_pids_that_cannot_be_a_job(job_root, pid, victim_job, signals, capsys):
    name = victim_job
    identity = proc_identity(os.getpid())  # a real start time and boot id: only pid is wrong
    identity["pid"] = pid
    plant_status(job_root, name, state="InProgress", **identity)
    code, out = cancel_in_process(name, capsys)
    assert signals == []
    assert refused_or_settled(code, out.out, out.err), out
    get_future(name).cancel()
    assert signals == []


@pytest.mark.parametrize("whose", ["this process", "its group leader", "its parent"])
def test_cancel_refuses_our_own_processes(job_root, whose, victim_job, signals, capsys):
    """status.json naming the canceller itself, with the real start time and boot id."""
    name = victim_job
    pid = {
        "this process": os.getpid(),
        "its group leader": os.getpgrp(),
        "its parent": os.getppid(),
    }[whose]
    plant_status(job_root, name, state="InProgress", **proc_identity(pid))
    code, out = cancel_in_process(name, capsys)
    assert signals == []
    assert refused_or_settled(code, out.out, out.err), out


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
def test_cancel_refuses_another_jobs_process_and_stops_the_right_one(job_root, keep_alive):
    """status.json of job A names job B's real process (bootstrap or warm worker): A's
    cancel refuses; B's own cancel stops B."""
    name_a = finished_job()
    with RemoteExecutor(
        stream_logs=False, keep_alive_period_in_seconds=keep_alive, job_name_prefix="other"
    ) as ex:
        b = ex.submit(nap, 120)
        status_b = wait_until_running(b)
        assert status_b.get("stage") == "running"
        plant_status(
            job_root,
            name_a,
            state="InProgress",
            **{k: status_b[k] for k in ("pid", "pid_start", "boot_id", "host")},
        )
        out = cli("jobs", "cancel", name_a)
        assert refused_or_settled(out.returncode, out.stdout, out.stderr), out
        assert alive(status_b["pid"]) and b.status() == "InProgress"
        out = cli("jobs", "cancel", b.job_name)
        assert out.returncode == 0 and "Stopped" in out.stdout, out
        assert b.status() == "Stopped"
        deadline = time.monotonic() + 20
        while alive(status_b["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(status_b["pid"])


# -- no process outlives its job ----------------------------------------------------------------


def start_children(tag, ready=None):
    """A child, and a grandchild in a session of its own whose parent has exited."""
    import subprocess
    import sys

    child = subprocess.Popen(["sleep", tag])
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import subprocess; subprocess.Popen(['sleep', '{tag}'], start_new_session=True)",
        ],
        check=True,
    )
    if ready is not None:
        with open(ready, "w") as f:
            f.write("started")
        import time

        time.sleep(120)
    return child.pid


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
def test_no_process_outlives_a_job_that_returned(keep_alive):
    tag = f"{4000 + uuid.uuid4().int % 900}.{uuid.uuid4().int % 10**6}"
    with RemoteExecutor(stream_logs=False, keep_alive_period_in_seconds=keep_alive) as ex:
        assert ex.submit(start_children, tag).result() > 0
        assert eventually_none_running(["sleep", tag]) == []
        if keep_alive:  # the worker lives on and serves the next job
            assert ex.submit(pow, 3, 2).result() == 9


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
def test_no_process_outlives_a_stopped_job(tmp_path, keep_alive):
    tag = f"{4000 + uuid.uuid4().int % 900}.{uuid.uuid4().int % 10**6}"
    ready = tmp_path / f"ready-{keep_alive}"
    with RemoteExecutor(stream_logs=False, keep_alive_period_in_seconds=keep_alive) as ex:
        f = ex.submit(start_children, tag, str(ready))
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(running_with(["sleep", tag])) == 2
        assert f.cancel()
        assert eventually_none_running(["sleep", tag]) == []


def test_no_process_outlives_a_job_cancelled_from_the_cli(tmp_path):
    tag = f"{4000 + uuid.uuid4().int % 900}.{uuid.uuid4().int % 10**6}"
    ready = tmp_path / "ready"
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(start_children, tag, str(ready))
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(running_with(["sleep", tag])) == 2
        out = cli("jobs", "cancel", f.job_name)
        assert out.returncode == 0, out.stderr
        assert eventually_none_running(["sleep", tag]) == []


@pytest.mark.parametrize(
    "backend",
    [
        {"name": "ray", "address": "http://203.0.113.7:8265", "submission_id": "JOB"},
        {"name": "ray", "address": "http://127.0.0.1:8265", "submission_id": "someone-elses-job"},
        {"name": "ray", "address": ["x"], "submission_id": {"y": 1}},
    ],
    ids=["planted-address", "planted-submission", "junk"],
)
def test_cancel_refuses_a_planted_ray_record(job_root, victim_job, monkeypatch, capsys, backend):
    """A planted address would receive this client's Ray credentials; a planted
    submission id would stop another Ray job."""
    import remote_runtime.backends.ray as ray_backend

    calls = []
    monkeypatch.setattr(ray_backend, "stop_detached", lambda *a: calls.append(a))
    monkeypatch.setenv("REMOTE_RUNTIME_RAY_ADDRESS", "http://127.0.0.1:8265")
    if backend["submission_id"] == "JOB":
        backend = {**backend, "submission_id": victim_job}
    plant_status(job_root, victim_job, state="InProgress", backend=backend)
    code, out = cancel_in_process(victim_job, capsys)
    assert calls == []
    assert refused_or_settled(code, out.out, out.err), out
