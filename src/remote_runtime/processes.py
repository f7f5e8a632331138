"""A job's processes on this machine: who they are, proof before a signal, no leftovers.

- Identity. A job records in status.json its pid together with that process's start
  time (``/proc/<pid>/stat`` field 22), the host and the boot id: a pid alone names
  whichever process holds that number today.
- Proof before a signal. status.json is written by the job, and by anyone who can write
  the job root. Stopping a job from its records (``remote-runtime jobs cancel``, a
  re-attached future) signals a pid only when every recorded field matches the live
  process, the process leads its own process group (every job process does), it is not
  our own group or pid 1, and its command line is this job's bootstrap
  (``-m remote_runtime.bootstrap <root>/<name>``) or a warm worker whose private claim
  (in this user's cache, never in the job root) names this job.
- No leftovers. The job process (and a warm worker) is a child subreaper: processes its
  function starts stay its descendants even when their parent exits or they start a new
  session, and all of them are killed when the job ends.

Only the standard library; Linux ``/proc`` (elsewhere identities are not recorded, a
job cannot be stopped from its records, and only the process group is cleaned up).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from .records import printable

__all__ = [
    "NotJobProcess",
    "become_subreaper",
    "identity",
    "job_process",
    "kill_descendants",
    "kill_tree",
]

_LINUX = sys.platform.startswith("linux")


class ProcInfo(NamedTuple):
    state: str
    ppid: int
    pgrp: int
    start: int  # clock ticks after boot: with the boot id, a process's identity


class NotJobProcess(Exception):
    """The recorded pid is not (provably) the job's process: nothing was signalled.

    ``gone`` is True when the recorded process no longer exists (the job is not running
    on this machine as recorded)."""

    def __init__(self, reason: str, *, gone: bool = False) -> None:
        super().__init__(reason)
        self.gone = gone


def proc_info(pid: int) -> ProcInfo | None:
    """State, parent, process group and start time of ``pid`` (None if there is none)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return ProcInfo(fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        return None
    return [a.decode(errors="replace") for a in data.split(b"\0")[:-1]]


def identity() -> dict[str, Any]:
    """This process as status.json records it: pid, start time and boot id (read once per
    process: none of them changes while it lives, and a warm worker records them per job)."""
    pid = os.getpid()
    cached = _identity.get(pid)
    if cached is None:
        cached = {"pid": pid}
        info = proc_info(pid) if _LINUX else None
        if info is not None:
            cached["pid_start"] = info.start
            cached["boot_id"] = boot_id()
        _identity.clear()  # (a forked child has a pid of its own)
        _identity[pid] = cached
    return dict(cached)


_identity: dict[int, dict[str, Any]] = {}


# -- proof before a signal --------------------------------------------------------------------


def is_bootstrap_of(argv: list[str], job_name: str) -> bool:
    """``... -m remote_runtime.bootstrap <root>/<job_name>``: the job's own process."""
    return (
        len(argv) >= 4
        and argv[-3:-1] == ["-m", "remote_runtime.bootstrap"]
        and argv[-1].rstrip("/").rsplit("/", 1)[-1] == job_name
    )


def is_worker(argv: list[str]) -> bool:
    """``... -m remote_runtime.worker <keep_alive> <fd>``: a warm worker."""
    return len(argv) >= 5 and argv[-4:-2] == ["-m", "remote_runtime.worker"]


def job_process(
    status: Mapping[str, Any], job_name: str, host: str, claim: Mapping[str, Any] | None
) -> int:
    """The pid of job ``job_name``'s process group, proven from its ``status`` record (and
    the worker ``claim`` from this user's cache, if any); NotJobProcess says why not."""
    pid = status.get("pid")
    if type(pid) is not int or pid <= 1:
        raise NotJobProcess(
            f"status.json names pid {printable(pid)}, which cannot be a job's process"
        )
    recorded_host = status.get("host")
    if recorded_host != host:
        raise NotJobProcess(
            f"the job's process runs on host {printable(recorded_host)}, not on this one "
            f"({printable(host)}): stop it there"
        )
    if not _LINUX:
        raise NotJobProcess(
            "a job's process can be verified only on Linux (/proc): stop it where it was launched"
        )
    if pid in (os.getpid(), os.getppid()):
        raise NotJobProcess(f"status.json names pid {pid}, this very command")
    start = status.get("pid_start")
    if type(start) is not int or not isinstance(status.get("boot_id"), str):
        raise NotJobProcess(
            f"status.json names pid {pid} without its start time and boot id, so it cannot be "
            "told from another process that holds that pid now"
        )
    if status.get("boot_id") != boot_id():
        raise NotJobProcess(
            f"pid {pid} was recorded before this machine last started: the job's process is gone",
            gone=True,
        )
    info = proc_info(pid)
    if info is None or info.state in ("Z", "X"):
        raise NotJobProcess(f"process {pid} is not running: the job's process is gone", gone=True)
    if info.start != start:
        raise NotJobProcess(
            f"process {pid} started at another time than the job's process: the job's process "
            "is gone and its pid now belongs to another process",
            gone=True,
        )
    if info.pgrp == os.getpgrp():
        raise NotJobProcess(f"process {pid} is in this command's own process group")
    if info.pgrp != pid:
        raise NotJobProcess(
            f"process {pid} does not lead its own process group, as every job process does"
        )
    argv = cmdline(pid) or []
    if is_bootstrap_of(argv, job_name):
        return pid
    if is_worker(argv):
        if (
            claim is not None
            and claim.get("job") == job_name
            and claim.get("pid") == pid
            and claim.get("pid_start") == start
        ):
            return pid
        raise NotJobProcess(
            f"process {pid} is a warm worker that is not running job {job_name} "
            "(no claim of it in this user's cache)"
        )
    shown = printable(" ".join(argv), limit=200) if argv else "an unreadable command line"
    raise NotJobProcess(
        f"process {pid} runs {shown}, not job {job_name}'s bootstrap or worker: "
        "status.json does not name this job's process (planted or stale)"
    )


def kill_tree(pid: int, start: int | None = None, patience: float = 5.0) -> bool:
    """SIGKILL the job process ``pid`` (with ``start``: only while it is still the process
    that started then), every descendant of it (those that started a session of their own
    too: the job process is their subreaper) and its process group. True if ``pid`` was
    signalled. Callers prove ``pid`` first (an unreaped child of theirs, or job_process)."""
    if _LINUX:
        info = proc_info(pid)
        if info is None or (start is not None and info.start != start):
            return False
        # stopped, the job process can neither start more processes nor reap any
        _signal(pid, info.start, signal.SIGSTOP)
        deadline = time.monotonic() + patience
        while True:
            found = tree(pid)
            alive = [p for p, i in found.items() if i.state not in ("Z", "X")]
            for child in alive:
                _signal(child, found[child].start, signal.SIGKILL)
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.005)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# -- no leftovers --------------------------------------------------------------------------------


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux prctl PR_SET_CHILD_SUBREAPER): orphaned
    descendants are re-parented to it instead of to PID 1. True if that worked."""
    if not _LINUX:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _table() -> dict[int, ProcInfo]:
    out: dict[int, ProcInfo] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if entry.isdigit():
            info = proc_info(int(entry))
            if info is not None:
                out[int(entry)] = info
    return out


def descendants(root: int, table: Mapping[int, ProcInfo]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _children(pid: int) -> list[int] | None:
    """Children of ``pid`` from ``/proc/<pid>/task/*/children`` (None where the kernel
    does not offer those files)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread has just ended
            return None
        except OSError:
            continue
    return out


def tree(root: int) -> dict[int, ProcInfo]:
    """Every descendant of ``root`` with its state, parent, group and start time. Walks
    the children files (cost grows with the descendants, not with the machine's process
    count), or the whole process table where they are missing."""
    out: dict[int, ProcInfo] = {}
    todo = _children(root)
    if todo is None:
        table = _table()
        return {pid: table[pid] for pid in descendants(root, table)}
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        info = proc_info(pid)
        if info is None:
            continue
        out[pid] = info
        todo.extend(_children(pid) or [])
    return out


def has_children() -> bool:
    """Whether this process has any child now, running or a zombie (one ``waitid`` call,
    nothing reaped). In a child subreaper no child means no descendant at all: an orphan
    of the job is re-parented to it. True when it cannot be told."""
    if not hasattr(os, "waitid"):
        return True
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except OSError:
        return True
    return True


def snapshot() -> set[tuple[int, int]]:
    """(pid, start) of every descendant of this process now."""
    if not _LINUX:
        return set()
    return {(pid, info.start) for pid, info in tree(os.getpid()).items()}


def kill_descendants(keep: set[tuple[int, int]] | None = None, patience: float = 5.0) -> int:
    """Kill every descendant of this process (but those in ``keep``, from
    :func:`snapshot`) and reap those that become its children. Returns how many were
    killed. Linux only (elsewhere: 0)."""
    if not _LINUX:
        return 0
    me = os.getpid()
    keep = keep or set()
    killed: set[tuple[int, int]] = set()
    deadline = time.monotonic() + patience
    while True:
        alive = 0
        for pid, info in tree(me).items():
            if (pid, info.start) in keep:
                continue
            if info.state in ("Z", "X"):
                if info.ppid == me:
                    _reap(pid)
                continue
            alive += 1
            if _signal(pid, info.start, signal.SIGKILL):
                killed.add((pid, info.start))
        if not alive or time.monotonic() > deadline:
            return len(killed)
        time.sleep(0.005)


def _signal(pid: int, start: int, sig: int) -> bool:
    """Send ``sig`` to ``pid`` if it is still the process that started at ``start``."""
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
    try:
        info = proc_info(pid)
        if info is None or info.start != start:
            return False
        if fd is not None and hasattr(signal, "pidfd_send_signal"):
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if fd is not None:
            os.close(fd)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
