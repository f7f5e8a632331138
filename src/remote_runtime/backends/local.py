"""The embedded local backend: each job in a fresh interpreter process of its own.

On Linux that process is forked from the client's fork server for the job's interpreter
and environment (forkserver.py), which makes it exactly what the process below would be
without paying for the interpreter start and the imports; elsewhere, for another
``python=``, or when no fork server can start, it is started as a new interpreter.

The process runs ``python -m remote_runtime.bootstrap <job_uri>`` in a new session (so
interrupting the caller does not interrupt the job; stopping it kills its whole process
group), with the per-job key in its environment and its stdout/stderr in the job's
``logs/`` (written locally first, then uploaded, when the root is not a local folder).

No leftovers: the job process kills every descendant when the function ends (it is a
child subreaper, so even those that started a session of their own or whose parent
exited); when the job process itself ends, however it ends, this client kills what is
left of its process group before reaping it (for a forked one, the fork server does,
being its parent). The log files are opened here, never
through a link and never a FIFO.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from ..bootstrap import KEY_ENV, LOG_DIR_ENV
from ..job import (
    EXIT_INTEGRITY,
    JobPaths,
    JobRecordError,
    JobState,
    cache_dir,
    claims_dir,
    open_log,
    read_log,
    read_spool,
)
from ..processes import kill_tree
from ..settings import Settings

if TYPE_CHECKING:
    from ..forkserver import ForkedProcess, ForkServers, Launch

__all__ = ["LocalBackend", "LocalProcess"]


def _client_paths() -> list[str]:
    """The client's import path minus the interpreter's own folders (used by the Ray backend)."""
    prefixes = {
        os.path.realpath(p)
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    out = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if not os.path.isdir(path):
            continue
        if any(path == p or path.startswith(p + os.sep) for p in prefixes):
            continue
        out.append(path)
    return list(dict.fromkeys(out))


def job_environment(
    key: bytes, settings: Settings, paths: JobPaths, log_dir: str | None
) -> dict[str, str]:
    """The job's environment: the caller's, plus ``environment_variables``; its
    PYTHONPATH holds only what the job needs to import remote_runtime (and what
    ``environment_variables`` names), never the caller's sys.path."""
    from ..workdir import runtime_path

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(settings.environment_variables or {})
    extra = runtime_path()
    if env.get("PYTHONPATH"):
        extra.append(env["PYTHONPATH"])
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(extra)
    env[KEY_ENV] = key.hex()
    env["PYTHONUNBUFFERED"] = "1"
    if log_dir:
        env[LOG_DIR_ENV] = log_dir
    if paths.store.storage_options:
        env["REMOTE_RUNTIME_STORAGE_OPTIONS"] = json.dumps(paths.store.storage_options)
    return env


def _start_dir() -> str:
    """An empty folder to start job processes in: the caller's working directory is not
    theirs (each job runs in its own), and must not be on their sys.path."""
    folder = os.path.join(cache_dir(), "start")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _exited(pid: int, timeout: float | None) -> bool:
    """Block until child ``pid`` exits or ``timeout`` passes, waking at once on exit,
    without reaping it (a pidfd on Linux; elsewhere Popen's own polling is used). True if
    it exited."""
    if not hasattr(os, "pidfd_open"):
        return True  # let Popen.wait(timeout) do it
    import select

    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True
    try:
        return bool(select.select([fd], [], [], None if timeout is None else max(0.0, timeout))[0])
    finally:
        os.close(fd)


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group that ``popen`` leads, only while ``popen`` is not reaped
    (until then its pid, and so its group id, cannot belong to anyone else)."""
    if popen.returncode is None:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_tree(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the job process ``popen``, all its descendants and its process group, while
    ``popen`` is not reaped (processes.kill_tree)."""
    if popen.returncode is None:
        kill_tree(popen.pid)


class LocalProcess:
    """A job running in its own process."""

    def __init__(
        self, popen: subprocess.Popen[bytes], log_dir: str, files: list[IO[bytes]]
    ) -> None:
        self.popen = popen
        self.log_dir = log_dir
        self._files = files
        self._reaping = threading.Lock()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float | None = None) -> int | None:
        if self.popen.returncode is None and not _exited(self.popen.pid, timeout):
            return None
        with self._reaping:
            if self.popen.returncode is None and hasattr(os, "pidfd_open"):
                # it has exited, unreaped: stop what is left of its process group first
                _kill_group(self.popen)
            try:
                code = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        for f in self._files:
            f.close()
        return code

    def stop(self) -> None:
        with self._reaping:
            _kill_tree(self.popen)
        self.wait(10)

    def log_chunk(self, stream: str, offset: int) -> bytes:
        return _read_log(self.log_dir, stream, offset)

    def lost_before_start(self) -> bool:
        return False


def _read_log(log_dir: str, stream: str, offset: int) -> bytes:
    return read_log(log_dir, stream, offset)


def _open_logs(paths: JobPaths, log_dir: str) -> list[IO[bytes]]:
    """The job's stdout and stderr log files, opened safely (job.open_log); a planted link
    or FIFO fails the job with IntegrityError before it starts."""
    files: list[IO[bytes]] = []
    try:
        paths.check_folder("logs")
        for stream in ("stdout", "stderr"):
            files.append(os.fdopen(open_log(log_dir, stream), "ab"))
    except JobRecordError as exc:
        for f in files:
            f.close()
        from remote_codecs import IntegrityError

        error = IntegrityError(f"job {paths.name} refused its logs: {exc}")
        try:
            paths.write_status(
                JobState.FAILED,
                exit_code=EXIT_INTEGRITY,
                error={
                    "type": "remote_codecs.errors.IntegrityError",
                    "message": str(error),
                    "traceback": "",
                },
            )
        except JobRecordError:
            pass  # the folder itself is a link: nothing is written through it
        raise error from None
    return files


def _log_dirs(paths: JobPaths) -> tuple[str, str | None]:
    """(where the job writes its logs, the same if they must be uploaded afterwards)."""
    if paths.store.local:
        return paths.logs, None
    local = os.path.join(cache_dir(), "logs", paths.name)
    return local, local


class LocalBackend:
    """Runs each job in a fresh local process, or in a warm worker when
    ``keep_alive_period_in_seconds`` > 0."""

    name = "local"
    _shared: LocalBackend | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.workers = WorkerPool()
        self._forks: ForkServers | None = None

    @classmethod
    def shared(cls) -> LocalBackend:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def launch(
        self, paths: JobPaths, key: bytes, settings: Settings
    ) -> LocalProcess | ForkedProcess | WorkerJob:
        if settings.keep_alive_period_in_seconds > 0:
            return self.workers.run(paths, key, settings)
        return self.launch_process(paths, key, settings)

    def launch_process(
        self, paths: JobPaths, key: bytes, settings: Settings
    ) -> LocalProcess | ForkedProcess:
        log_dir, upload_dir = _log_dirs(paths)
        python = settings.python or sys.executable
        out, err = _open_logs(paths, log_dir)  # closed by wait()
        env = job_environment(key, settings, paths, upload_dir)
        uri = paths.store.uri_of(paths.name)
        cwd = _start_dir()
        # (the very path: a venv's python resolves to its base interpreter, with other packages)
        if settings.python is None or settings.python == sys.executable:
            from .. import forkserver

            request = forkserver.Launch(
                paths, python, uri, env, cwd, [out, err], log_dir, KEY_ENV, (KEY_ENV, LOG_DIR_ENV)
            )
            forked = self._fork(request)
            if forked is not None:
                return forked
        popen = subprocess.Popen(
            [python, "-m", "remote_runtime.bootstrap", uri],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env=env,
            close_fds=True,
            cwd=cwd,
        )
        return LocalProcess(popen, log_dir, [out, err])

    def _fork(self, request: Launch) -> ForkedProcess | None:
        """The job forked from this client's fork server (forkserver.py), or None where
        that cannot be done (then it starts with Popen)."""
        from .. import forkserver

        if not forkserver.available():
            return None
        with self._lock:
            if self._forks is None:
                self._forks = forkserver.ForkServers()
        try:
            forked = self._forks.launch(request)
        except forkserver.Unavailable:
            return None
        except BaseException:
            for f in request.logs:
                f.close()
            raise
        for f in request.logs:
            f.close()  # the job process has its own copies
        return forked


# -- warm workers ---------------------------------------------------------------------------------


class Worker:
    """One warm worker process and the thread that reads its replies."""

    def __init__(
        self,
        env_key: tuple[Any, ...],
        python: str,
        env: dict[str, str],
        keep_alive: int,
        on_exit: Callable[[Worker], None],
    ) -> None:
        self.env_key = env_key
        self.on_exit = on_exit
        self.keep_alive = keep_alive
        read_fd, write_fd = os.pipe()
        self.popen = subprocess.Popen(
            [python, "-m", "remote_runtime.worker", str(keep_alive), str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            cwd=_start_dir(),
            start_new_session=True,
            env=env,
            close_fds=True,
        )
        os.close(write_fd)
        self._replies = os.fdopen(read_fd, "r")
        self.current: WorkerJob | None = None
        self.idle_since = time.monotonic()
        self._reader = threading.Thread(
            target=self._read, name=f"worker-{self.popen.pid}", daemon=True
        )
        self._reader.start()

    def _read(self) -> None:
        for line in self._replies:
            msg = json.loads(line)
            job = self.current
            if job is None or msg.get("job") != job.name:
                continue
            if msg.get("started"):
                job.spool = msg.get("spool")
                job.started.set()
            elif "exit" in msg:
                job._finish(int(msg["exit"]))
        self._replies.close()
        code = self.popen.wait()
        self.close()
        self.on_exit(self)
        job = self.current
        if job is not None and job.exit_code is None:
            if job.spool:  # what the job printed before the worker died
                from ..worker import copy_spool

                copy_spool(job.spool, job.log_dir)
            job._finish(code if code != 0 else -9, died=True)

    def usable(self) -> bool:
        margin = min(1.0, self.keep_alive / 4)
        return (
            self.popen.poll() is None
            and time.monotonic() - self.idle_since < self.keep_alive - margin
        )

    def send(self, job: WorkerJob, message: dict[str, Any]) -> bool:
        self.current = job
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.write((json.dumps(message) + "\n").encode())
            self.popen.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def close(self) -> None:
        """Ask the worker to exit (its stdin closes); it finishes a running job first."""
        try:
            if self.popen.stdin is not None:
                self.popen.stdin.close()
        except OSError:
            pass

    def kill(self) -> None:
        _kill_tree(self.popen)


class WorkerJob:
    """A job running in a warm worker (the backend's ``Launched`` for that case)."""

    def __init__(self, pool: WorkerPool, worker: Worker | None, name: str, log_dir: str) -> None:
        self.pool = pool
        self.worker = worker
        self.name = name
        self.log_dir = log_dir
        self.started = threading.Event()
        self.exit_code: int | None = None
        self.died = False
        self.spool: str | None = None  # where the worker puts the job's output while it runs
        self._done = threading.Event()

    def _finish(self, code: int, died: bool = False) -> None:
        self.exit_code = code
        self.died = died
        self._done.set()
        if not died and self.worker is not None:
            self.pool.release(self.worker)

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._done.wait(timeout):
            return None
        return self.exit_code

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.kill()
        self._done.wait(10)

    def log_chunk(self, stream: str, offset: int) -> bytes:
        spool = self.spool
        if spool and not self._done.is_set():  # copied into log_dir before the job ends
            return read_spool(f"{spool}.{stream}", offset)
        return _read_log(self.log_dir, stream, offset)

    def lost_before_start(self) -> bool:
        """The worker went away before taking the job (it was retiring): run it elsewhere."""
        return self.died and not self.started.is_set()


@functools.lru_cache(maxsize=64)
def _resolved(python: str) -> str:
    """The interpreter's absolute path (per job: cached). Not resolved through links: a
    venv's python is a link to its base interpreter but another environment, so its
    jobs must never share a warm worker with the base's."""
    return os.path.abspath(python)


class WorkerPool:
    """Warm workers, keyed by the environment a job needs: interpreter, dependencies,
    working directory contents and environment variables."""

    def __init__(self) -> None:
        self._idle: dict[tuple[Any, ...], list[Worker]] = {}
        self._all: set[Worker] = set()
        self._lock = threading.Lock()
        import atexit

        atexit.register(self.close_all)

    @staticmethod
    def env_key(paths: JobPaths, settings: Settings) -> tuple[Any, ...]:
        """What a warm worker is for: jobs of one job root (a worker keeps what a job
        leaves behind, such as threads, so it never serves another root), interpreter,
        dependencies, workspace and environment."""
        execution = paths.written or paths.read_spec()["execution"]
        return (
            paths.store.uri,
            _resolved(settings.python or sys.executable),
            execution.get("requirements"),
            execution.get("workspace"),
            tuple(sorted((settings.environment_variables or {}).items())),
            json.dumps(paths.store.storage_options, sort_keys=True),
            settings.keep_alive_period_in_seconds,
        )

    def run(self, paths: JobPaths, key: bytes, settings: Settings) -> WorkerJob:
        log_dir, _ = _log_dirs(paths)
        env_key = self.env_key(paths, settings)
        message = {
            "job_uri": paths.store.uri_of(paths.name),
            "key": key.hex(),
            "log_dir": log_dir,
            "storage_options": paths.store.storage_options or None,
            "claims": claims_dir(),  # in this client's cache, where cancel looks
        }
        for _ in range(3):
            worker = self._take(env_key) or self._start(env_key, paths, key, settings)
            job = WorkerJob(self, worker, paths.name, log_dir)
            if worker.send(job, message):
                return job
            worker.kill()  # it was exiting: the job never reached it, try another
        raise RuntimeError("could not hand the job to a warm worker")

    def _take(self, env_key: tuple[Any, ...]) -> Worker | None:
        with self._lock:
            idle = self._idle.get(env_key, [])
            while idle:
                worker = idle.pop()
                if worker.usable():
                    return worker
                worker.close()
                self._all.discard(worker)
        return None

    def _start(
        self, env_key: tuple[Any, ...], paths: JobPaths, key: bytes, settings: Settings
    ) -> Worker:
        python = settings.python or sys.executable
        execution = paths.read_spec()["execution"]
        if execution.get("requirements") is not None:
            from ..environment import ensure_venv
            from ..job import digest

            text = paths.store.read_bytes(paths.requirements)
            if digest(text) != execution["requirements"]:
                raise RuntimeError(f"{paths.requirements} changed after it was written")
            python = ensure_venv(text.decode())
        env = job_environment(key, settings, paths, None)
        env.pop(KEY_ENV, None)  # each job's key arrives with the job, over the pipe
        worker = Worker(env_key, python, env, settings.keep_alive_period_in_seconds, self._forget)
        with self._lock:
            self._all.add(worker)
        return worker

    def release(self, worker: Worker) -> None:
        worker.current = None
        worker.idle_since = time.monotonic()
        with self._lock:
            if worker in self._all:
                self._idle.setdefault(worker.env_key, []).append(worker)

    def _forget(self, worker: Worker) -> None:
        with self._lock:
            self._all.discard(worker)
            idle = self._idle.get(worker.env_key)
            if idle and worker in idle:
                idle.remove(worker)

    def close_all(self) -> None:
        """Close every worker's pipe: idle ones exit now, busy ones after their job."""
        with self._lock:
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            worker.close()

    def live(self) -> int:
        with self._lock:
            return sum(1 for w in self._all if w.popen.poll() is None)
