"""The embedded local backend: each job in a fresh interpreter process of its own.

The process runs ``python -m remote_runtime.bootstrap <job_uri>`` in a new session (so
interrupting the caller does not interrupt the job; stopping it kills its whole process
group), with the per-job key in its environment and its stdout/stderr in the job's
``logs/`` (written locally first, then uploaded, when the root is not a local folder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

from ..bootstrap import KEY_ENV, LOG_DIR_ENV
from ..job import JobPaths, cache_dir
from ..settings import Settings

__all__ = ["LocalBackend", "LocalProcess"]


def _client_paths() -> list[str]:
    """The client's import path minus the interpreter's own folders: the job process sees
    the same user modules (a test module, a project folder) as the caller."""
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
    env = dict(os.environ)
    env.update(settings.environment_variables or {})
    extra = _client_paths()
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


def _exited(pid: int, timeout: float) -> bool:
    """Block until process ``pid`` exits or ``timeout`` passes, waking at once on exit
    (a pidfd on Linux; elsewhere Popen's own polling is used). True if it exited."""
    if not hasattr(os, "pidfd_open"):
        return True  # let Popen.wait(timeout) do it
    import select

    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True
    try:
        return bool(select.select([fd], [], [], max(0.0, timeout))[0])
    finally:
        os.close(fd)


class LocalProcess:
    """A job running in its own process."""

    def __init__(
        self, popen: subprocess.Popen[bytes], log_dir: str, files: list[IO[bytes]]
    ) -> None:
        self.popen = popen
        self.log_dir = log_dir
        self._files = files

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float | None = None) -> int | None:
        if (
            timeout is not None
            and self.popen.returncode is None
            and not _exited(self.popen.pid, timeout)
        ):
            return None
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for f in self._files:
            f.close()
        return code

    def stop(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.wait(10)

    def log_chunk(self, stream: str, offset: int) -> bytes:
        try:
            with open(os.path.join(self.log_dir, f"{stream}.log"), "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""


class LocalBackend:
    """Runs each job in a fresh local process (warm workers come with the executor)."""

    name = "local"
    _shared: LocalBackend | None = None
    _lock = threading.Lock()

    @classmethod
    def shared(cls) -> LocalBackend:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def launch(self, paths: JobPaths, key: bytes, settings: Settings) -> LocalProcess:
        if paths.store.local:
            log_dir = paths.logs
            upload_dir = None
        else:
            log_dir = upload_dir = os.path.join(cache_dir(), "logs", paths.name)
        os.makedirs(log_dir, exist_ok=True)
        python = settings.python or sys.executable
        out = open(os.path.join(log_dir, "stdout.log"), "ab")  # noqa: SIM115 - closed by wait()
        err = open(os.path.join(log_dir, "stderr.log"), "ab")  # noqa: SIM115
        kwargs: dict[str, Any] = {}
        popen = subprocess.Popen(
            [python, "-m", "remote_runtime.bootstrap", paths.store.uri_of(paths.name)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env=job_environment(key, settings, paths, upload_dir),
            close_fds=True,
            **kwargs,
        )
        return LocalProcess(popen, log_dir, [out, err])
