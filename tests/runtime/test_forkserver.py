"""Cold jobs forked from the client's fork server are what a fresh job process is.

Every test reads the job process from the outside (its /proc entries, its records, what
the function saw) and, where it matters, compares a forked job with one started as a new
interpreter (REMOTE_RUNTIME_FORKSERVER=0).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from remote_runtime import JobFailedError, JobTimeoutError, RemoteExecutor, remote
from servers import alive, eventually_none_running, running_with, status_record

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def eventually_gone(pid, seconds=20.0):
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def forked(parent_argv):
    return "remote_runtime.forkserver" in parent_argv


def probe(mark_module=False):
    """What the job process is: its parent, command line, paths, environment, files."""
    import os
    import sys

    ppid = os.getppid()
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        parent = [a.decode().strip() for a in f.read().split(b"\0")[:-1]]
    with open("/proc/self/cmdline", "rb") as f:
        mine = [a.decode() for a in f.read().split(b"\0")[:-1]]
    seen = {
        "colorsys_imported": "colorsys" in sys.modules,
        "json_marked": getattr(sys.modules.get("json"), "MARKED_BY_A_JOB", False),
        "env_marked": "MARKED_BY_A_JOB" in os.environ,
    }
    if mark_module:  # state a later job must never see
        import colorsys  # noqa: F401
        import json

        json.MARKED_BY_A_JOB = True
        os.environ["MARKED_BY_A_JOB"] = "1"
    return {
        "parent": parent,
        "parent_threads": len(os.listdir(f"/proc/{ppid}/task")),
        "cmdline": mine,
        "argv": sys.argv,
        "orig_argv": getattr(sys, "orig_argv", None),
        "path": sys.path,
        "cwd_parent": os.path.dirname(os.getcwd()),
        "env": dict(os.environ),
        "session_leader": os.getsid(0) == os.getpid(),
        "group_leader": os.getpgrp() == os.getpid(),
        "stdin": os.readlink("/proc/self/fd/0"),
        "stdout": os.readlink("/proc/self/fd/1"),
        "stderr": os.readlink("/proc/self/fd/2"),
        "fds": sorted(os.listdir("/proc/self/fd")),  # (one of them is the listing's own)
        "main_module": [
            sys.modules["__main__"].__name__,
            sys.modules["__main__"].__spec__.name,
            os.path.basename(sys.modules["__main__"].__file__),
        ],
        "seen": seen,
        "unbuffered": sys.stdout.write_through,
    }


def fresh(monkeypatch):
    monkeypatch.setenv("REMOTE_RUNTIME_FORKSERVER", "0")


def comparable(seen):
    """What a job saw, less its parent, its name and the switch between the two modes."""
    out = dict(seen)
    out["env"] = {k: v for k, v in seen["env"].items() if k != "REMOTE_RUNTIME_FORKSERVER"}
    out["cmdline"] = [*seen["cmdline"][:-1], seen["cmdline"][-1].rstrip("/")]
    for key in ("parent", "parent_threads"):
        out.pop(key)
    name = out["cmdline"][-1].rsplit("/", 1)[-1]
    text = re.sub(re.escape(name) + r"-\d+", "<job>-<pid>", json.dumps(out))
    return json.loads(text.replace(name, "<job>"))


def test_a_forked_job_is_what_a_fresh_job_process_is(job_root, tmp_path, monkeypatch):
    (tmp_path / "only_in_client").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "only_in_client"))  # must not reach the job
    call = remote(stream_logs=False, environment_variables={"JOB_VAR": "set"})(probe)
    forked_job = call()
    fresh(monkeypatch)
    fresh_job = call()

    assert forked(forked_job["parent"]) and forked_job["parent_threads"] == 1
    assert not forked(fresh_job["parent"])
    assert comparable(forked_job) == comparable(fresh_job)
    # and what that is:
    name = forked_job["cmdline"][-1].rstrip("/").rsplit("/", 1)[-1]
    assert forked_job["cmdline"][1:3] == ["-m", "remote_runtime.bootstrap"]
    assert forked_job["cmdline"][-1].rstrip("/") == str(job_root / name)
    assert forked_job["argv"][1:] == [str(job_root / name)]
    assert forked_job["env"]["JOB_VAR"] == "set"
    assert "REMOTE_RUNTIME_JOB_KEY" not in forked_job["env"]
    assert str(tmp_path / "only_in_client") not in forked_job["path"]
    assert forked_job["session_leader"] and forked_job["group_leader"]
    assert forked_job["stdin"] == "/dev/null"
    assert forked_job["stdout"].endswith("stdout.log") and forked_job["stderr"].endswith(
        "stderr.log"
    )
    assert len(forked_job["fds"]) == 4  # stdin, stdout, stderr, and the listing itself


def test_a_job_sees_nothing_of_an_earlier_one(job_root):
    call = remote(stream_logs=False)(probe)
    first = call(mark_module=True)
    second = call()
    assert forked(first["parent"]) and first["parent"] == second["parent"]  # one server
    assert second["seen"] == {"colorsys_imported": False, "json_marked": False, "env_marked": False}


def shout(word):
    print("out:", word)
    print("err:", word, file=sys.stderr)
    if word == "raise":
        raise KeyError(word)
    if word == "exit":
        sys.stdout.flush()
        os._exit(7)
    if word == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return word.upper()


@pytest.mark.parametrize("mode", ["forked", "fresh"])
def test_results_exceptions_logs_and_exit_codes(job_root, monkeypatch, mode):
    if mode == "fresh":
        fresh(monkeypatch)
    seen = {}
    with RemoteExecutor(stream_logs=False, max_parallel_jobs=2) as ex:
        futures = {w: ex.submit(shout, w) for w in ("hi", "raise", "exit", "kill")}
        assert futures["hi"].result(timeout=60) == "HI"
        assert isinstance(futures["raise"].exception(timeout=60), KeyError)
        for word in ("exit", "kill"):
            assert isinstance(futures[word].exception(timeout=60), JobFailedError)
        for word, f in futures.items():
            status = status_record(job_root / f.job_name)
            logs = f.logs()
            assert f"out: {word}" in logs and f"err: {word}" in logs
            seen[word] = (status["state"], status.get("exit_code"))
        assert futures["hi"].logs() == "out: hi\nerr: hi\n"  # and nothing else
    assert seen == {
        "hi": ("Completed", 0),
        "raise": ("Failed", 1),
        "exit": ("Failed", 7),
        "kill": ("Failed", -9),
    }


def report_and_nap(path, seconds, tag=None):
    """Write this job's pid and parent, start a grandchild in a session of its own, nap."""
    import subprocess

    if tag is not None:
        subprocess.Popen(["sleep", tag], start_new_session=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "parent": os.getppid()}, f)
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return "rested"


def wait_for_file(path, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return json.loads(open(path).read())


def sleeps_with(tag):
    return running_with(["sleep", tag])


def eventually_no_sleep(tag, seconds=20.0):
    return eventually_none_running(["sleep", tag], seconds)


def new_tag():
    return f"{5000 + uuid.uuid4().int % 900}.{uuid.uuid4().int % 10**6}"


def test_cancel_stops_the_whole_tree(tmp_path, job_root):
    tag, ready = new_tag(), str(tmp_path / "ready")
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(report_and_nap, ready, 120, tag)
        job = wait_for_file(ready)
        assert forked(cmdline(job["parent"]))
        assert len(sleeps_with(tag)) == 1
        assert f.cancel()
        assert f.status() == "Stopped"
        assert eventually_gone(job["pid"])
        assert eventually_no_sleep(tag) == []


def test_max_runtime_kills_the_whole_tree(tmp_path, job_root):
    tag, ready = new_tag(), str(tmp_path / "ready")
    with pytest.raises(JobTimeoutError, match="max_runtime_in_seconds=2"):
        remote(max_runtime_in_seconds=2, stream_logs=False)(report_and_nap)(ready, 120, tag)
    job = wait_for_file(ready)
    assert eventually_gone(job["pid"])
    assert eventually_no_sleep(tag) == []


def test_cancel_from_another_client_proves_the_forked_process(tmp_path, job_root):
    ready = str(tmp_path / "ready")
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(report_and_nap, ready, 120)
        job = wait_for_file(ready)
        assert forked(cmdline(job["parent"]))
        deadline = time.monotonic() + 30
        while f.describe()["status"].get("stage") != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f.describe()["status"]["pid"] == job["pid"]
        out = subprocess.run(
            [sys.executable, "-m", "remote_runtime", "jobs", "cancel", f.job_name],
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
        )
        assert out.returncode == 0 and "Stopped" in out.stdout, out
        assert eventually_gone(job["pid"])
        assert f.status() == "Stopped"


def test_a_job_outlives_the_death_of_its_fork_server(tmp_path, job_root):
    ready = str(tmp_path / "ready")
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(report_and_nap, ready, 1.5)
        job = wait_for_file(ready)
        server = job["parent"]
        assert forked(cmdline(server))
        os.kill(server, signal.SIGKILL)
        assert f.result(timeout=60) == "rested"  # settled, without hanging
        assert f.status() == "Completed"
        # the next cold job gets a new server
        again = ex.submit(report_and_nap, ready + "2", 0)
        assert again.result(timeout=60) == "rested"
        assert wait_for_file(ready + "2")["parent"] != server


def test_a_job_whose_fork_server_died_can_still_be_stopped(tmp_path, job_root):
    tag, ready = new_tag(), str(tmp_path / "ready")
    with RemoteExecutor(stream_logs=False) as ex:
        f = ex.submit(report_and_nap, ready, 120, tag)
        job = wait_for_file(ready)
        os.kill(job["parent"], signal.SIGKILL)
        assert eventually_gone(job["parent"])
        assert alive(job["pid"])
        assert f.cancel()
        assert f.status() == "Stopped"
        assert eventually_gone(job["pid"])
        assert eventually_no_sleep(tag) == []


def test_no_process_is_left_when_the_client_exits(tmp_path, job_root):
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            """\
            import json, os
            from remote_runtime import remote

            def who():
                return {"pid": os.getpid(), "parent": os.getppid()}

            seen = [remote(stream_logs=False)(who)() for _ in range(3)]
            print(json.dumps(seen))
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(out.stdout)
    servers = {s["parent"] for s in seen}
    assert len(servers) == 1 and len({s["pid"] for s in seen}) == 3
    for pid in [*servers, *(s["pid"] for s in seen)]:
        assert eventually_gone(pid), cmdline(pid)


def square(x):
    return x * x, os.getppid()


def test_a_client_with_threads_forks_nothing_itself(job_root):
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        call = remote(stream_logs=False)(square)
        with cf.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(call, range(8)))
    finally:
        stop.set()
        spinner.join()
    assert [r[0] for r in results] == [x * x for x in range(8)]
    parents = {r[1] for r in results}
    assert os.getpid() not in parents
    assert all(forked(cmdline(p)) for p in parents if alive(p))


def test_fork_server_can_be_turned_off(job_root, monkeypatch):
    fresh(monkeypatch)
    assert remote(stream_logs=False)(square)(3) == (9, os.getpid())


def test_a_fork_server_that_cannot_start_leaves_jobs_to_new_interpreters(job_root, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "cloudpickle.py").write_text(
        textwrap.dedent(
            """\
            import sys
            if sys.argv[0].endswith("forkserver.py"):
                raise ImportError("no fork server in this environment")
            here = sys.path.index(__file__.rsplit("/", 1)[0])
            del sys.modules["cloudpickle"]
            saved, sys.path[:] = sys.path[:], sys.path[:here] + sys.path[here + 1 :]
            import cloudpickle
            sys.path[:] = saved
            """
        )
    )
    call = remote(stream_logs=False, environment_variables={"PYTHONPATH": str(shadow)})(square)
    assert [call(x) for x in (2, 3)] == [(4, os.getpid()), (9, os.getpid())]


def test_the_clients_own_interpreter_named_explicitly_is_forked_too(job_root):
    x, parent = remote(stream_logs=False, python=sys.executable)(square)(4)
    assert x == 16 and forked(cmdline(parent))


def readable_memory(pid):
    """The bytes of every readable private mapping of process ``pid``."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] == "[vvar]"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, OverflowError, ValueError):
                continue
    return b"".join(chunks)


def parent_of_job():
    return os.getppid()


def test_the_fork_server_never_holds_a_jobs_key(job_root):
    """A child is a copy of the server: what the server held of an earlier job's key, a
    later job could read in its own memory."""
    from remote_runtime.client import job_key

    with RemoteExecutor(stream_logs=False) as ex:
        futures = [ex.submit(parent_of_job) for _ in range(3)]
        servers = {f.result(timeout=60) for f in futures}
    (server,) = servers
    try:
        memory = readable_memory(server)
    except PermissionError:
        pytest.skip("this machine does not let a parent read its child's memory")
    assert len(memory) > 1 << 20
    for f in futures:
        key = job_key(f.job_name)
        assert key.hex().encode() not in memory and key not in memory
