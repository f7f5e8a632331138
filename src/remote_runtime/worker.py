"""A warm worker: ``python -m remote_runtime.worker <keep_alive_seconds> <reply_fd>``.

Runs job after job in one interpreter, so neither the interpreter start nor the
function's imports are paid again. Every job still goes through its folder
(``bootstrap.run_job``). Commands arrive one JSON line at a time on stdin:
``{"job_uri": ..., "key": <hex>, "log_dir": ...}``; replies go to ``reply_fd``:
``{"job": name, "started": true}`` when a job is taken, ``{"job": name, "exit": code}``
when it ends. The worker exits when no job arrives within the keep-alive period, or at
once when stdin closes (the client is gone: a worker never outlives its client).
"""

from __future__ import annotations

import json
import os
import select
import sys


def _redirect(log_dir: str) -> tuple[int, int]:
    """Point fds 1 and 2 at the job's log files; return the saved originals."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    os.makedirs(log_dir, exist_ok=True)
    for fd, name in ((1, "stdout.log"), (2, "stderr.log")):
        target = os.open(os.path.join(log_dir, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    return saved


def _restore(saved: tuple[int, int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, orig in zip((1, 2), saved):
        os.dup2(orig, fd)
        os.close(orig)


def serve(keep_alive: float, reply_fd: int) -> int:
    from . import bootstrap
    from . import job as J
    from .store import Store

    reply = os.fdopen(reply_fd, "w", buffering=1)
    stdin = sys.stdin.buffer
    home = os.getcwd()
    stores: dict[str, Store] = {}
    while True:
        ready, _, _ = select.select([stdin], [], [], keep_alive)
        if not ready:
            return 0  # idle for the whole keep-alive period
        line = stdin.readline()
        if not line:
            return 0  # the client closed the pipe: it is gone, or it shut us down
        msg = json.loads(line)
        root, name = bootstrap.split_job_uri(msg["job_uri"])
        reply.write(json.dumps({"job": name, "started": True}) + "\n")
        options = msg.get("storage_options") or None
        store = stores.get(root) or stores.setdefault(root, Store(root, options))
        paths = J.JobPaths(store, J.check_job_name(name))
        saved = _redirect(msg["log_dir"])
        try:
            code = bootstrap.run_job(paths, bytes.fromhex(msg["key"]), worker=True)
        except BaseException as exc:  # a bug of ours: report it as an internal failure
            print(f"remote-runtime worker: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = J.EXIT_INTERNAL
        finally:
            bootstrap._upload_logs_from(paths, msg["log_dir"])
            _restore(saved)
            os.chdir(home)
        reply.write(json.dumps({"job": name, "exit": code}) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return serve(float(argv[0]), int(argv[1]))


if __name__ == "__main__":
    sys.exit(main())
