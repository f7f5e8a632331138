"""A warm worker: ``python -m remote_runtime.worker <keep_alive_seconds> <reply_fd>``.

Runs job after job in one interpreter, so neither the interpreter start nor the
function's imports are paid again. Every job still goes through its folder
(``bootstrap.run_job``). Commands arrive one JSON line at a time on stdin:
``{"job_uri": ..., "key": <hex>, "log_dir": ..., "claims": <folder>}``; replies go to ``reply_fd``:
``{"job": name, "started": true}`` when a job is taken, ``{"job": name, "exit": code}``
when it ends. The worker exits when no job arrives within the keep-alive period, or at
once when stdin closes (the client is gone: a worker never outlives its client).

Each job's environment variables are those the worker was started with (the pool keys
workers by them), so they reach the job through the process environment, never the
store. While it runs a job, the worker claims it in this user's cache
(``job.claim_log``: one line appended per job taken and ended): what lets ``jobs cancel``
tell this worker from any other.

No leftovers: the worker is a child subreaper, and when a job ends every process that
appeared under the worker during the job (children, grandchildren, those that started a
session of their own or whose parent exited) is killed before the job's end is reported.
Threads the function started cannot be stopped: they keep running in the worker.
"""

from __future__ import annotations

import json
import os
import select
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import JobPaths


def _redirect(log_dir: str) -> tuple[int, int]:
    """Point fds 1 and 2 at the job's log files (opened safely: never through a link, never
    a FIFO; JobRecordError otherwise, with nothing redirected); return the saved originals."""
    from .job import open_log

    out = open_log(log_dir, "stdout")
    try:
        err = open_log(log_dir, "stderr")
    except BaseException:
        os.close(out)
        raise
    return _point_at(out, err, close=True)


def _point_at(out: int, err: int, close: bool) -> tuple[int, int]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    for fd, target in ((1, out), (2, err)):
        os.dup2(target, fd)
        if close:
            os.close(target)
    return saved


def _restore(saved: tuple[int, int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, orig in zip((1, 2), saved):
        os.dup2(orig, fd)
        os.close(orig)


class _Spool:
    """Where a job's stdout and stderr go while it runs in this worker (jobs on a local
    root): two files of the worker's own, in this user's cache, copied into the job's
    ``logs/`` when the job ends, and only if it wrote anything. A job that prints nothing
    costs no folder and no file (a folder and two files cost more than a trivial job's
    function). While the job runs its client reads the spool (``WorkerJob.log_chunk``).

    A ``logs/`` planted in the folder is still refused when the job starts: if there is
    one, its files are opened then (never through a link, never a FIFO) and the spool is
    appended to them at the end."""

    def __init__(self) -> None:
        from .job import cache_dir

        folder = os.path.join(cache_dir(), "work")
        os.makedirs(folder, exist_ok=True)
        self.base = os.path.join(folder, f"worker-{os.getpid()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fds = {s: os.open(f"{self.base}.{s}", flags, 0o600) for s in STREAMS}
        self.targets: dict[str, int] = {}
        self.copied = dict.fromkeys(STREAMS, 0)  # bytes of each spool already in logs/

    def start(self, log_dir: str) -> tuple[int, int]:
        """Redirect fds 1 and 2 to the spool; open the job's log files now if its
        ``logs/`` exists already (JobRecordError for a link or a FIFO there)."""
        from .job import open_log

        self.targets = {}
        if os.path.lexists(log_dir):
            try:
                for stream in STREAMS:
                    self.targets[stream] = open_log(log_dir, stream)
            except BaseException:
                self._close_targets()
                raise
        return _point_at(self.fds["stdout"], self.fds["stderr"], close=False)

    def copy(self, log_dir: str) -> None:
        """Copy what the job wrote since the last copy into its log files (made now, when
        there is anything to copy). A log that cannot be opened safely is dropped."""
        from .job import JobRecordError, open_log

        for stream in STREAMS:
            size = os.fstat(self.fds[stream]).st_size
            if size <= self.copied[stream]:
                continue
            target = self.targets.get(stream)
            if target is None:
                try:
                    target = self.targets[stream] = open_log(log_dir, stream)
                except (JobRecordError, OSError):
                    self.copied[stream] = size
                    continue  # planted meanwhile: nothing is written through it
            _copy(f"{self.base}.{stream}", target, self.copied[stream], size)
            self.copied[stream] = size

    def finish(self, log_dir: str) -> None:
        """Copy the rest of what the job wrote, and empty the spool for the next job."""
        try:
            self.copy(log_dir)
        finally:
            self._close_targets()
            for fd in self.fds.values():
                os.ftruncate(fd, 0)
            self.copied = dict.fromkeys(STREAMS, 0)

    def _close_targets(self) -> None:
        for fd in self.targets.values():
            os.close(fd)
        self.targets = {}

    def close(self) -> None:
        for stream, fd in self.fds.items():
            os.close(fd)
            try:
                os.remove(f"{self.base}.{stream}")
            except OSError:
                pass


STREAMS = ("stdout", "stderr")


def _copy(src: str, target: int, start: int, end: int) -> None:
    with open(src, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            os.write(target, chunk)
            left -= len(chunk)


def copy_spool(base: str, log_dir: str) -> None:
    """After a worker died in the middle of a job: copy its spool into the job's logs (by
    the client, so that the job's output is not lost), then remove the spool."""
    from .job import JobRecordError, open_log

    for stream in STREAMS:
        path = f"{base}.{stream}"
        try:
            size = os.path.getsize(path)
            if size:
                fd = open_log(log_dir, stream)
                try:
                    _copy(path, fd, 0, size)
                finally:
                    os.close(fd)
            os.remove(path)
        except (OSError, JobRecordError):
            pass


class _Claims:
    """This worker's claim log (``job.claim_log``) in the client's cache: one line appended
    when a job is taken and one when it ends, through a descriptor kept open (a file
    created per job cost more than a trivial job's function); rewritten whole past
    ``_COMPACT`` bytes, removed when the worker exits."""

    _COMPACT = 64 * 1024

    def __init__(self) -> None:
        self.path: str | None = None
        self.fd: int | None = None
        self.size = 0

    def record(self, folder: str, job: str | None, spool: str | None = None) -> None:
        from .job import claim_log
        from .processes import identity

        record = {"job": job, **identity()}
        if spool is not None:
            record["spool"] = spool  # where the job's output is while it runs
        line = (json.dumps(record) + "\n").encode()
        path = claim_log(folder, os.getpid())
        if self.fd is None or path != self.path or self.size > self._COMPACT:
            self.close()
            os.makedirs(folder, mode=0o700, exist_ok=True)
            tmp = f"{path}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o600)
            os.write(fd, line)
            os.replace(tmp, path)
            self.path, self.fd, self.size = path, fd, len(line)
            os.lseek(fd, 0, os.SEEK_END)
            return
        os.write(self.fd, line)
        self.size += len(line)

    def close(self, remove: bool = False) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if remove and self.path is not None:
            try:
                os.remove(self.path)
            except OSError:
                pass


def _environ_snapshot() -> dict[Any, Any]:
    """A copy of ``os.environ`` to restore after a job: its encoded mapping when it has
    one (a C-level dict copy; decoding every variable cost more than a trivial job)."""
    data = getattr(os.environ, "_data", None)
    return dict(data) if isinstance(data, dict) else dict(os.environ)


def _restore_environ(saved: dict[Any, Any]) -> None:
    """Undo a job's changes to ``os.environ`` (through ``os.environ``, so that the
    process environment, ``putenv``, follows)."""
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        if data == saved:
            return
        env: Any = os.environ
        saved = {env.decodekey(k): env.decodevalue(v) for k, v in saved.items()}
    elif dict(os.environ) == saved:
        return
    os.environ.clear()
    os.environ.update(saved)


def _run(
    paths: JobPaths, msg: dict[str, Any], before: set[tuple[int, int]], spool: _Spool | None
) -> int:
    """Run one job with its logs redirected (a log file that cannot be trusted fails it),
    then kill every process that appeared under the worker since ``before``."""
    from remote_codecs import IntegrityError

    from . import bootstrap
    from . import job as J
    from .processes import has_children, kill_descendants

    log_dir = str(msg["log_dir"])
    spooled = spool is not None and paths.store.local
    try:
        if paths.store.local:
            paths.check_folder("logs")
        saved = spool.start(log_dir) if spooled and spool is not None else _redirect(log_dir)
    except J.JobRecordError as exc:
        try:
            paths.check_folder()
        except J.JobRecordError:
            return J.EXIT_INTEGRITY  # not even status.json can be written safely
        return bootstrap._fail(
            paths, J.EXIT_INTEGRITY, IntegrityError(f"job {paths.name} refused its logs: {exc}")
        )
    if spooled and spool is not None:  # a job that times out: its output first

        def before_expiry() -> None:
            spool.finish(log_dir)

        def before_final() -> None:
            spool.copy(log_dir)

        bootstrap.before_expiry = before_expiry
        bootstrap.before_final = before_final
    try:
        return bootstrap.run_job(paths, bytes.fromhex(str(msg["key"])), worker=True)
    finally:
        bootstrap.before_expiry = bootstrap.before_final = None
        if before or has_children():  # (none: no descendant either, the worker is a subreaper)
            kill_descendants(keep=before)  # no process of the job outlives it
        _restore(saved)
        if spooled and spool is not None:
            spool.finish(log_dir)
        bootstrap._upload_logs_from(paths, log_dir)


def serve(keep_alive: float, reply_fd: int) -> int:
    from .processes import become_subreaper
    from .store import Store

    become_subreaper()  # what a job starts stays under the worker, to be stopped when it ends
    reply = os.fdopen(reply_fd, "w", buffering=1)
    stdin = sys.stdin.buffer
    home = os.getcwd()
    stores: dict[str, Store] = {}
    claims = _Claims()
    try:
        spool: _Spool | None = _Spool()
    except OSError:
        spool = None  # the job's log files, opened per job
    try:
        return _serve(keep_alive, reply, stdin, home, stores, claims, spool)
    finally:
        claims.close(remove=True)
        if spool is not None:
            spool.close()


def _serve(
    keep_alive: float,
    reply: Any,
    stdin: Any,
    home: str,
    stores: dict[str, Any],
    claims: _Claims,
    spool: _Spool | None,
) -> int:
    from . import bootstrap
    from . import job as J
    from .processes import has_children, snapshot
    from .store import Store

    while True:
        ready, _, _ = select.select([stdin], [], [], keep_alive)
        if not ready:
            return 0  # idle for the whole keep-alive period
        line = stdin.readline()
        if not line:
            return 0  # the client closed the pipe: it is gone, or it shut us down
        msg = json.loads(line)
        root, name = bootstrap.split_job_uri(msg["job_uri"])
        options = msg.get("storage_options") or None
        store = stores.get(root) or stores.setdefault(root, Store(root, options))
        paths = J.JobPaths(store, J.check_job_name(name))
        started: dict[str, Any] = {"job": name, "started": True}
        if spool is not None and store.local:
            started["spool"] = spool.base  # its output while it runs (_run: spooled)
        reply.write(json.dumps(started) + "\n")
        before = snapshot() if has_children() else set()
        folder = str(msg.get("claims") or J.claims_dir())
        claimed = False
        environ = _environ_snapshot()  # a job's changes to it end with the job
        try:
            claims.record(folder, name, started.get("spool"))
            claimed = True
            code = _run(paths, msg, before, spool)
        except BaseException as exc:  # a bug of ours: report it as an internal failure
            print(f"remote-runtime worker: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = J.EXIT_INTERNAL
        finally:
            if claimed:
                try:
                    claims.record(folder, None)
                except OSError:
                    claims.close(remove=True)  # no stale claim may outlive the job
            os.chdir(home)
            _restore_environ(environ)
        reply.write(json.dumps({"job": name, "exit": code}) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return serve(float(argv[0]), int(argv[1]))
    finally:
        from .bootstrap import worker_scratch

        try:
            os.rmdir(worker_scratch())
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
