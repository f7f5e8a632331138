"""A pre-started interpreter that forks one fresh job process per cold job.

A cold job (``keep_alive_period_in_seconds=0``) needs a fresh process of its own; most
of its cost is starting an interpreter and importing remote_runtime, remote_codecs and
cloudpickle. A long-lived client therefore keeps, per (interpreter, environment), one
*fork server*: ``python -m remote_runtime.forkserver <fd> <padding>``, started lazily on
the first cold job, in the job environment (less the per-job key) and the empty start
folder, which imports the job side once and then forks one child per job. The server
never runs user code and never starts a thread, so every child starts from the same
clean state; each child becomes exactly what ``python -m remote_runtime.bootstrap
<job_uri>`` would be:

- a session and process group of its own (``setsid``); stdin ``/dev/null``, stdout and
  stderr the job's log files (opened by the client, never through a link nor a FIFO,
  and passed over the socket with SCM_RIGHTS);
- the job's environment (``os.environ`` replaced, per-job key included: the key travels
  in a pipe that only the child reads, sent over the private socket pair, never through
  the store, a file, or the server's memory), working folder,
  ``sys.argv``, ``sys.path`` (the server's initial one, which is what the job's
  PYTHONPATH gives a fresh process: the client's sys.path never reaches it) and command
  line (``/proc/<pid>/cmdline`` is rewritten to the bootstrap's, the job URI padded with
  trailing slashes to the server's command line length, so that ``jobs cancel`` proves
  the process exactly as it proves a fresh one);
- it runs ``remote_runtime.bootstrap`` as ``__main__`` (as ``-m`` does) and leaves
  through the normal interpreter exit (atexit handlers, non-daemon threads, stdio
  flushed, modules finalized), as a fresh process does.

The server is the child's parent: it reports the child's pid, start time and a pidfd, and
later its exit code (negative: the signal) after killing what is left of its process
group, then reaps it. The client stops a job by asking the server to kill the child's
tree (processes.kill_tree on an unreaped child: the same proof as for a child of the
client). If the server dies, its children keep running; the client watches each through
its pidfd and stops it by pid and start time. The server exits when the client closes
its end of the socket (the client exited) or after ``IDLE_SECONDS`` without a job.

Differences from a fresh process, all by design: the children of one server share its
string hash seed (``PYTHONHASHSEED``) and its already imported modules; ``random``
reseeds itself after fork. Used on Linux only (``os.fork``, ``os.pidfd_open``,
``socket.send_fds``), for the client's own interpreter, and not when
``REMOTE_RUNTIME_FORKSERVER=0``; elsewhere, or when the server cannot start, cold jobs
start with ``subprocess.Popen`` as before.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess
    import threading

    from .job import JobPaths

__all__ = ["ForkServers", "ForkedProcess", "available"]

DISABLE_ENV = "REMOTE_RUNTIME_FORKSERVER"
PAD = 1024  # bytes of command line a server keeps for rewriting its children's
MAX_MESSAGE = 1 << 18
IDLE_SECONDS = 300.0
MAX_SERVERS = 4  # per client: idle ones beyond this are closed (a new environment each)
START_TIMEOUT = 60.0

_INITIAL_PATH = list(sys.path)  # in the server: what the job's PYTHONPATH gives a fresh process


def available() -> bool:
    """Whether cold jobs may be forked from a server on this platform and in this client."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and hasattr(os, "pidfd_open")
        and hasattr(socket, "send_fds")
        and hasattr(socket, "SOCK_SEQPACKET")
        and os.environ.get(DISABLE_ENV, "1") != "0"
    )


# -- the server --------------------------------------------------------------------------------


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _serve(sock: socket.socket) -> dict[str, Any] | None:
    """The server's loop. Returns None when the server should exit, or, in a forked child,
    what the child needs to become the job process."""
    import gc
    import select
    import signal
    import time

    from .processes import kill_tree, proc_info

    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    children: dict[int, tuple[Any, int]] = {}  # pidfd -> (job id, pid)
    pids: dict[Any, int] = {}  # job id -> pid, while unreaped
    idle_since = time.monotonic()
    closing = False

    def reply(message: dict[str, Any], fds: list[int] | None = None) -> None:
        try:
            if fds:
                socket.send_fds(sock, [json.dumps(message).encode()], fds)
            else:
                sock.send(json.dumps(message).encode())
        except OSError:
            pass  # the client is gone: its end of the socket reads as closed next

    reply({"ready": True})
    while True:
        timeout = None if children else max(0.0, IDLE_SECONDS - (time.monotonic() - idle_since))
        events = poller.poll(None if timeout is None else int(timeout * 1000) + 1)
        if not events and not children and not closing:
            # idle: refuse new jobs from now on, then answer those already sent
            closing = True
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                return None
            continue
        for fd, _ in events:
            if fd != sock.fileno():
                job_id, pid = children.pop(fd)
                poller.unregister(fd)
                pids.pop(job_id, None)
                try:  # what is left of its process group, while its pid is still ours
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                _, status = os.waitpid(pid, 0)
                os.close(fd)
                reply({"id": job_id, "exit": os.waitstatus_to_exitcode(status)})
                if not children:
                    idle_since = time.monotonic()
                continue
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            except OSError:
                return None
            if not data:  # the client exited or closed us (its running jobs go on)
                for f in fds:
                    os.close(f)
                return None
            message = json.loads(data)
            job_id = message.get("id")
            if message.get("op") == "kill":
                target = pids.get(job_id)
                if target is not None:
                    kill_tree(target)  # an unreaped child of ours: its pid is its own
                continue
            refusal = None
            if closing:
                refusal = "the fork server is exiting (idle)"
            elif len(fds) != 3:
                refusal = "the job's log files and key did not arrive"
            elif _threads() != 1:
                refusal = "the fork server is not single-threaded"
            if refusal is not None:
                for f in fds:
                    os.close(f)
                reply({"id": job_id, "error": refusal})
                continue
            gc.freeze()  # the server's objects: no collection in a child writes to their pages
            try:
                pid = os.fork()
            except OSError as exc:  # (out of processes or memory, for now)
                pid = -1
                reply({"id": job_id, "error": f"fork failed: {exc}"})
            if pid == 0:
                return {"message": message, "fds": fds, "sock": sock, "pidfds": list(children)}
            for f in fds:
                os.close(f)
            if pid < 0:
                continue
            pidfd = os.pidfd_open(pid)
            info = proc_info(pid)
            children[pidfd] = (job_id, pid)
            pids[job_id] = pid
            poller.register(pidfd, select.POLLIN)
            reply(
                {"id": job_id, "pid": pid, "start": info.start if info else None},
                [pidfd],
            )


def _argument_area() -> tuple[int, int] | None:
    """Where this process's command line lies in its memory (``/proc/self/stat`` fields
    48 and 49), if what is there is what ``/proc/self/cmdline`` shows."""
    import ctypes

    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])
        with open("/proc/self/cmdline", "rb") as f:
            shown = f.read()
    except (OSError, IndexError, ValueError):
        return None
    if start <= 0 or end - start != len(shown) or ctypes.string_at(start, end - start) != shown:
        return None
    return start, end


def _set_cmdline(argv: list[str]) -> bool:
    """Rewrite this process's command line (/proc/self/cmdline) to ``argv``, whose last
    item (the job URI) is padded with trailing slashes to the length of the original
    command line (the kernel shows the whole original area). False if it does not fit."""
    import ctypes

    area = _argument_area()
    if area is None:
        return False
    start, end = area
    data = b"\0".join(a.encode() for a in argv)
    gap = (end - start) - len(data) - 1
    if gap < 0 or start <= 0:
        return False
    data += b"/" * gap + b"\0"
    ctypes.memmove(start, data, len(data))
    return True


def _become_job(job: dict[str, Any]) -> int:
    """In a forked child: turn into the job's process and run it."""
    message = job["message"]
    job["sock"].close()
    for fd in job["pidfds"]:
        os.close(fd)
    out, err, secret = job["fds"]
    with os.fdopen(secret, "rb") as f:  # (the server never reads it: no job's key is in
        value = f.read(1 << 16).decode()  # its memory, and so in no later child's)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in {null, out, err}:
        if fd > 2:
            os.close(fd)
    os.chdir(message["cwd"])
    os.environ.clear()
    os.environ.update(message["env"])
    if message.get("secret"):
        os.environ[message["secret"]] = value
    sys.path[:] = _INITIAL_PATH
    import runpy

    uri = message["job_uri"]
    argv = [message["python"], "-m", "remote_runtime.bootstrap", uri]
    sys.argv = ["-m", uri]  # (run_module puts the module's file first, as -m does)
    sys.orig_argv = argv
    if not _set_cmdline(argv):  # (the client checked that it fits, the server that it can)
        print(
            f"remote-runtime: the fork server could not give job {uri} its command line; "
            f"set {DISABLE_ENV}=0 to start each cold job as a new interpreter",
            file=sys.stderr,
        )
        return 70
    # as `python -m remote_runtime.bootstrap <job_uri>` runs it: as __main__ (and only
    # there, as in a fresh process), which ends with sys.exit(main()), so the child
    # leaves through the normal interpreter exit
    if sys.modules.pop("remote_runtime.bootstrap", None) is not None:
        vars(sys.modules["remote_runtime"]).pop("bootstrap", None)
    runpy.run_module("remote_runtime.bootstrap", run_name="__main__", alter_sys=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(argv[0]))
    # What every job imports, once: the children start with it.
    import ctypes  # noqa: F401  (become_subreaper)
    import hmac  # noqa: F401
    import traceback  # noqa: F401

    import cloudpickle  # noqa: F401

    import remote_codecs  # noqa: F401

    from . import errors, job, outcome, processes, store  # noqa: F401

    if _argument_area() is None:
        # a child could not take its job's command line, by which `jobs cancel` proves it
        # and a re-attached client sees it alive: leave these jobs to new interpreters
        return 1
    forked = _serve(sock)
    if forked is None:
        return 0
    return _become_job(forked)


# -- the client side ---------------------------------------------------------------------------


class Unavailable(Exception):
    """The fork server could not take the job (nothing was started): use Popen."""


class ForkedProcess:
    """A cold job forked by a fork server (the backend's ``Launched``)."""

    def __init__(self, server: ForkServer, job_id: int, paths: JobPaths, log_dir: str) -> None:
        import threading

        self.server = server
        self.id = job_id
        self.paths = paths
        self.log_dir = log_dir
        self.pid = 0
        self.start: int | None = None
        self.pidfd: int | None = None
        self.error: str | None = None
        self.answered = threading.Event()  # started, or refused
        self._wake = threading.Event()  # ended, or the server died
        self._done = threading.Event()
        self._code: int | None = None
        self._lock = threading.Lock()

    def _started(self, pid: int, start: int | None, pidfd: int | None) -> None:
        self.pid, self.start, self.pidfd = pid, start, pidfd
        self.answered.set()

    def _finish(self, code: int) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._code = code
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
            self._done.set()
            self._wake.set()

    def _server_died(self) -> None:
        self.answered.set()
        self._wake.set()

    def wait(self, timeout: float | None = None) -> int | None:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._wake.wait(timeout):
            return None
        if self._done.is_set():
            return self._code
        # The server died: the job's process is on its own; watch it through its pidfd.
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        with self._lock:
            fd = self.pidfd
            if fd is None:
                return self._code
            import select

            if not select.select([fd], [], [], left)[0]:
                return None
        try:
            status = self.paths.read_status()
        except Exception:  # (the store is down: the client learns the outcome later)
            status = {}
        code = status.get("exit_code") if status.get("state") in _TERMINAL else None
        self._finish(code if isinstance(code, int) else -9)  # (its real code went to init)
        return self._code

    def stop(self) -> None:
        if self._done.is_set():
            return
        asked = not self.server.dead and self.server.send({"op": "kill", "id": self.id})
        if asked and self.wait(10) is not None:
            return
        if not self._done.is_set():  # the server is gone: prove the job's process by its start
            from .processes import kill_tree

            with self._lock:
                if self.pidfd is not None and self.pid > 1:
                    kill_tree(self.pid, self.start)
            self.wait(10)

    def log_chunk(self, stream: str, offset: int) -> bytes:
        from .job import read_log

        return read_log(self.log_dir, stream, offset)

    def lost_before_start(self) -> bool:
        return False


_TERMINAL = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class Launch:
    """One cold job to start: its folder, interpreter, URI, environment (``secret`` names
    the variable that holds its key; ``private`` those that differ per job and so do not
    choose the server), start folder and log files."""

    paths: JobPaths
    python: str
    uri: str
    env: dict[str, str]
    cwd: str
    logs: list[IO[bytes]]
    log_dir: str
    secret: str
    private: tuple[str, ...]


class ForkServer:
    """The client's end of one fork server, and the thread that reads its replies."""

    def __init__(self, python: str, env: dict[str, str], cwd: str) -> None:
        import subprocess
        import threading

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                [python, "-m", "remote_runtime.forkserver", str(theirs.fileno()), " " * PAD],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                cwd=cwd,
                start_new_session=True,
                env=env,
                close_fds=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.dead = False
        self.ready = threading.Event()
        self.jobs: dict[int, ForkedProcess] = {}
        self.last_used = 0.0
        self._next = 0
        self._lock = threading.Lock()  # sends, and the job table
        self._reader: threading.Thread = threading.Thread(
            target=self._read, name=f"forkserver-{self.popen.pid}", daemon=True
        )
        self._reader.start()

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> bool:
        data = json.dumps(message).encode()
        try:
            with self._lock:
                if fds:
                    socket.send_fds(self.sock, [data], fds)
                else:
                    self.sock.send(data)
            return True
        except OSError:
            return False

    def busy(self) -> bool:
        with self._lock:
            return bool(self.jobs)

    def launch(self, request: Launch) -> ForkedProcess:
        import time

        paths, python, uri, env = request.paths, request.python, request.uri, request.env
        cwd, logs, log_dir, secret = request.cwd, request.logs, request.log_dir, request.secret
        self.last_used = time.monotonic()
        with self._lock:
            self._next += 1
            job = ForkedProcess(self, self._next, paths, log_dir)
            self.jobs[job.id] = job
        # The key travels in a pipe that only the child reads, never in the message.
        public = {k: v for k, v in env.items() if k != secret}
        message = {"op": "run", "id": job.id, "job_uri": uri, "python": python, "env": public}
        message.update(cwd=cwd, secret=secret if secret in env else None)
        data = json.dumps(message).encode()
        if self.dead or len(data) > MAX_MESSAGE - 1024:
            self._forget(job)
            raise Unavailable("the fork server is gone or the job's environment is too large")
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, env.get(secret, "").encode())
        finally:
            os.close(write_end)
        try:
            sent = self.send(message, [*(f.fileno() for f in logs), read_end])
        finally:
            os.close(read_end)
        if not sent:
            self._forget(job)
            raise Unavailable("the fork server did not take the job")
        if not job.answered.wait(START_TIMEOUT):
            self.kill()
            self._forget(job)
            raise RuntimeError(
                f"the fork server (pid {self.popen.pid}) did not start job {paths.name} "
                f"within {START_TIMEOUT:g} s; it was stopped. Run the job again, or set "
                f"{DISABLE_ENV}=0 to start each cold job with a new interpreter."
            )
        if job.error is not None or (job.pid == 0 and not self.ready.is_set()):
            self._forget(job)  # refused, or the server never read it: nothing was started
            raise Unavailable(job.error or "the fork server exited before it was ready")
        if job.pid == 0:
            self._forget(job)
            raise RuntimeError(
                f"the fork server (pid {self.popen.pid}) died while starting job {paths.name}: "
                "whether its process started is unknown. Check its status before running it again."
            )
        return job

    def _forget(self, job: ForkedProcess) -> None:
        with self._lock:
            self.jobs.pop(job.id, None)

    def _read(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 4096, 1)
            except OSError:
                break
            if not data:
                break
            message = json.loads(data)
            if message.get("ready"):
                self.ready.set()
                continue
            with self._lock:
                job = self.jobs.get(message.get("id"))
                if job is not None and "exit" in message:
                    del self.jobs[job.id]
            if job is None:
                for f in fds:
                    os.close(f)
                continue
            if "pid" in message:
                job._started(int(message["pid"]), message.get("start"), fds[0] if fds else None)
            elif "error" in message:
                job.error = str(message["error"])
                job.answered.set()
            elif "exit" in message:
                job._finish(int(message["exit"]))
        self.dead = True
        with self._lock:
            orphans = list(self.jobs.values())
            self.sock.close()
        for job in orphans:
            job._server_died()
        self.popen.wait()

    def close(self) -> None:
        """Close our end: the server exits (its running jobs go on)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def kill(self) -> None:
        self.dead = True
        try:
            self.popen.kill()
        except OSError:
            pass
        self.close()


class ForkServers:
    """The fork servers of one client, by (interpreter, environment less the job key)."""

    def __init__(self) -> None:
        import threading

        self._servers: dict[tuple[Any, ...], ForkServer] = {}
        self._broken: set[tuple[Any, ...]] = set()  # a server could not start: Popen for these
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget_all)

    def _forget_all(self) -> None:
        """In a forked client: these sockets are the parent's, not ours."""
        for server in self._servers.values():
            try:
                server.sock.close()
            except OSError:
                pass
        self._servers = {}

    def launch(self, request: Launch) -> ForkedProcess:
        """Start the job in a forked child of the server for its environment (started now
        if there is none yet). Unavailable: nothing was started, use Popen."""
        if len(request.python) + len(request.uri) + 64 > PAD:
            raise Unavailable("the job's command line would not fit")
        shared = {k: v for k, v in request.env.items() if k not in request.private}
        key = (request.python, tuple(sorted(shared.items())))
        for _ in range(2):
            with self._lock:
                if key in self._broken:
                    raise Unavailable("no fork server starts in this environment")
                server = self._servers.get(key)
                if server is None or server.dead:
                    self._trim()
                    server = self._servers[key] = ForkServer(sys.executable, shared, request.cwd)
            try:
                return server.launch(request)
            except Unavailable:
                if not server.ready.is_set():
                    with self._lock:
                        if len(self._broken) < 64:
                            self._broken.add(key)
                    raise  # it could not even start: this environment needs Popen
                server.dead = True  # exiting (idle) or gone: the next try starts another
                server.close()
        raise Unavailable("the fork server exited twice while taking the job")

    def _trim(self) -> None:
        for key, server in list(self._servers.items()):
            if server.dead:
                del self._servers[key]
        idle = sorted((s.last_used, k) for k, s in self._servers.items() if not s.busy())
        while len(self._servers) >= MAX_SERVERS and idle:
            _, key = idle.pop(0)
            self._servers.pop(key).close()

    def pids(self) -> list[int]:
        with self._lock:
            return [s.popen.pid for s in self._servers.values() if not s.dead]


if __name__ == "__main__":
    sys.exit(main())
