"""What a job is on disk: its name, its folder layout, its spec and its status records."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import (
    MAX_RECORD,
    JobRecordError,
    append_local_status,
    check_real_folder,
    kind_of,
    parse_record,
    parse_status,
    read_local_file,
    read_local_record,
    status_line,
)
from .store import Store, publish_local

__all__ = ["JobPaths", "JobRecordError", "JobState", "make_job_name"]

NAME_RE = re.compile(r"^[a-zA-Z0-9](-?[a-zA-Z0-9])*$")
MAX_NAME = 63


class JobState:
    """The states a job goes through (SageMaker's names)."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    UNKNOWN = "Unknown"  # status.json is unreadable (see its "unreadable" field)
    TERMINAL = frozenset({COMPLETED, FAILED, STOPPED})
    # what a waiting client stops waiting for: an end, or a record it cannot read
    SETTLED = TERMINAL | {UNKNOWN}


# Exit codes of ``python -m remote_runtime.bootstrap``.
EXIT_OK = 0
EXIT_USER_ERROR = 1  # the function raised; exception/ holds it
EXIT_ENVIRONMENT = 3  # interpreter version, dependencies, pre-execution commands
EXIT_INTEGRITY = 4  # function/ or arguments/ failed verification or decoding
EXIT_TIMEOUT = 124  # max_runtime_in_seconds exceeded
EXIT_INTERNAL = 70


def cache_dir() -> str:
    """This machine's cache for remote-runtime: job keys, scratch folders, venvs, logs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "remote-runtime")


def hostname() -> str:
    if hasattr(os, "uname"):
        return os.uname().nodename
    import platform

    return platform.node()


MAX_PREFIX = 39  # SageMaker's: a 63-character name leaves 39 for the prefix


def name_prefix(prefix: str | None, fallback: str = "job") -> str:
    """The prefix as job names carry it: [a-zA-Z0-9-] only, at most 39 characters."""
    clean = re.sub(r"[^a-zA-Z0-9]+", "-", prefix or fallback).strip("-") or "job"
    return clean[:MAX_PREFIX].rstrip("-") or "job"


def make_job_name(prefix: str | None, fallback: str = "job") -> str:
    """``<prefix>-<YYYYMMDD>-<HHMMSSmmm>-<random>`` (UTC): at most 63 characters of
    [a-zA-Z0-9-], the prefix kept up to 39 characters as SageMaker keeps it."""
    import datetime

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S%f")[:-3]
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    # one getrandom call (secrets.choice makes two per character); the suffix only keeps
    # names of the same millisecond apart, its small bias towards the first 4 is harmless
    suffix = "".join(alphabet[b % 36] for b in os.urandom(4))
    return f"{name_prefix(prefix, fallback)}-{stamp}-{suffix}"


def purpose(name: str, role: str) -> str:
    """What a job's bundle is signed for: its job and its role (function, arguments,
    results, exception), so no bundle can stand in for another."""
    return f"remote-runtime job {name}: {role}"


def check_job_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME_RE.match(name):
        raise ValueError(
            f"invalid job name {name!r}: at most {MAX_NAME} characters of [a-zA-Z0-9-]"
        )
    return name


@dataclass(frozen=True)
class JobPaths:
    """The folder layout of one job: the only place that knows it."""

    store: Store
    name: str
    # the execution record this process wrote into job.json (what its launch needs to
    # know, without reading the file back); None for a job found in the store
    written: dict[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def folder(self) -> str:
        return self.store.path(self.name)

    def _p(self, *parts: str) -> str:
        return self.store.path(self.name, *parts)

    @property
    def workspace(self) -> str:
        return self._p("workdir", "workspace.zip")

    @property
    def requirements(self) -> str:
        return self._p("workdir", "requirements.txt")

    @property
    def pre_execution_script(self) -> str:
        return self._p("workdir", "pre_execution.sh")

    @property
    def spec(self) -> str:
        return self._p("job.json")

    @property
    def status(self) -> str:
        return self._p("status.json")

    @property
    def logs(self) -> str:
        return self._p("logs")

    @property
    def stdout(self) -> str:
        return self._p("logs", "stdout.log")

    @property
    def stderr(self) -> str:
        return self._p("logs", "stderr.log")

    # -- the folder itself: real directories inside the root, never links ---------------

    def check_folder(self, *subfolders: str) -> None:
        """Refuse (JobRecordError) a job folder, or one of its ``subfolders`` (bundle
        folders, ``logs``, ``workdir``), that is a symbolic link or not a directory, or a
        job folder that resolves outside the root: nothing is written through them.
        Missing folders are fine. Object stores have no links: nothing to check."""
        if not self.store.local or not check_real_folder(self.folder, "folder"):
            return
        # The folder itself is no link (just checked) and its name holds no separator or
        # "..", so it resolves to <the root, resolved>/<name>: only a change of the root's
        # own path could move it, which no job writes. Resolved once per process and root
        # (each resolution walks every component of the path: a dozen syscalls a job).
        if self.store.root not in _resolved_roots:
            inside = os.path.join(os.path.realpath(self.store.root), self.name)
            if os.path.realpath(self.folder) != inside:
                raise JobRecordError(
                    f"{self.folder} resolves to {os.path.realpath(self.folder)}, outside the job root"
                )
            _resolved_roots.add(self.store.root)
        for sub in subfolders:
            check_real_folder(self._p(sub), f"{sub}/ folder")

    # -- bundles: function, arguments, results, exception ---------------------------------
    #
    # A small value is one file, ``<role>.bundle`` (remote_codecs.dumps: a stored zip of
    # the manifest and parts, published with one rename or one PUT); a larger one is a
    # bundle folder ``<role>/``. Either is signed for its job and role.

    def bundle(self, which: str) -> str:
        """The URI of a bundle folder: function, arguments, results or exception."""
        assert which in ROLES
        return self.store.uri_of(self.name, which)

    def bundle_file(self, which: str) -> str:
        """The path of a single-file bundle: ``<job>/<which>.bundle``."""
        assert which in ROLES
        return self._p(f"{which}.bundle")

    def has_bundle(self, which: str) -> bool:
        return self.store.exists(self.bundle_file(which)) or self.store.exists(
            self._p(which, "manifest.json")
        )

    def save_bundle(self, which: str, value: Any, key: bytes | None) -> None:
        """Write ``value`` as this job's ``which`` bundle, signed with ``key`` for this job
        and role: one file when it is small, else a bundle folder. SerializationError
        (nothing written) when it cannot travel."""
        import remote_codecs as rc
        from remote_codecs.api import dumps_if_small

        why = purpose(self.name, which)
        data = dumps_if_small(value, SMALL_BUNDLE, key=key, purpose=why)
        if data is None:
            rc.save(
                value,
                self.bundle(which),
                key=key,
                purpose=why,
                storage_options=self.store.storage_options or None,
            )
            # a single file found there would be read first: planted, or of an earlier try
            if self.store.exists(self.bundle_file(which)):
                self.store.remove(self.bundle_file(which))
        elif self.store.local:
            publish_local(self.bundle_file(which), data, direct=which in INPUTS)
        else:
            self.store.write_bytes(self.bundle_file(which), data)

    def save_function(self, fn: Any, key: bytes | None) -> str | None:
        """Write the job's function bundle. A small one is content-addressed: written
        unsigned, the same bytes for every job of the same function, so that a local
        root hard-links the file an earlier job of this process wrote instead of writing
        another; returns its digest, which the job's signed execution record must carry
        (``execution["function_bundle"]``: what verifies it). A large one is a bundle
        folder signed for this job (returns None)."""
        from remote_codecs.api import dumps_if_small

        data = dumps_if_small(fn, SMALL_BUNDLE, purpose=FUNCTION_PURPOSE)
        if data is None:
            self.save_bundle("function", fn, key)
            return None
        found = digest(data)
        path = self.bundle_file("function")
        if not self.store.local:
            self.store.write_bytes(path, data)
        elif not _link_written(self.store.root, found, path):
            publish_local(path, data, direct=True)
            _remember_written(self.store.root, found, path)
        return f"sha256:{found}"

    def load_function(self, key: bytes | None, expected: str | None, reuse: bool = False) -> Any:
        """The job's function: with ``expected`` (the digest its signed execution record
        carries), ``function.bundle`` whose bytes must have that digest; without, the
        function bundle signed for this job. ``reuse`` (a warm worker): a function this
        process decoded from the same bytes is used again if nothing a job did changed it
        (``_decoded``)."""
        import remote_codecs as rc

        if expected is None:
            return self.load_bundle("function", key)
        name = f"{self.name}/function.bundle"
        data = self._bundle_bytes("function")
        if data is None:
            raise rc.IntegrityError(f"{name} is missing: the signed job record names one")
        if f"sha256:{digest(data)}" != expected:
            raise rc.IntegrityError(
                f"{name} does not match the digest in the signed job record (tampered with)"
            )
        if not reuse:
            return rc.loads(data, purpose=FUNCTION_PURPOSE, name=name)
        entry = _decoded.pop(expected, None)
        if entry is None or _pickled(entry[0]) != entry[1]:
            function = rc.loads(data, purpose=FUNCTION_PURPOSE, name=name)
            pickled = _pickled(function)
            if pickled is None:
                return function
            entry = (function, pickled)
        _decoded[expected] = entry  # (now the most recently used)
        if len(_decoded) > _DECODED_KEPT:
            del _decoded[next(iter(_decoded))]
        return entry[0]

    def load_bundle(self, which: str, key: bytes | None, **options: Any) -> Any:
        """This job's ``which`` bundle, verified (with ``key``: its signature) and checked
        to be written for this job and role; ``options`` are those of remote_codecs.load.
        FileNotFoundError when there is none."""
        import remote_codecs as rc

        why = purpose(self.name, which)
        data = self._bundle_bytes(which)
        if data is not None:
            return rc.loads(
                data, key=key, purpose=why, name=f"{self.name}/{which}.bundle", **options
            )
        return rc.load(
            self.bundle(which),
            key=key,
            purpose=why,
            storage_options=self.store.storage_options or None,
            **options,
        )

    def inspect_bundle(self, which: str) -> Any:
        """The manifest of this job's ``which`` bundle (remote_codecs.inspect)."""
        import remote_codecs as rc

        data = self._bundle_bytes(which)
        if data is not None:
            return rc.inspect(data)
        return rc.inspect(self.bundle(which), storage_options=self.store.storage_options or None)

    def _bundle_bytes(self, which: str) -> bytes | None:
        """The bytes of ``<which>.bundle`` (None when there is none): a regular file, never
        read through a link, never larger than a single-file bundle may be."""
        import remote_codecs as rc

        path = self.bundle_file(which)
        try:
            if self.store.local:
                return read_local_file(path, MAX_BUNDLE_FILE)
            size = self.store.size(path)
            if size > MAX_BUNDLE_FILE:
                raise JobRecordError(
                    f"{path}: {size} bytes, more than it may hold ({MAX_BUNDLE_FILE})"
                )
            return self.store.read_bytes(path)
        except FileNotFoundError:
            return None
        except JobRecordError as exc:  # a link, not a regular file, or too large: says which
            raise rc.IntegrityError(str(exc)) from None

    # -- records --------------------------------------------------------------------

    def _read_record(self, path: str) -> dict[str, Any]:
        """A record of the folder, read without trusting it (records.py): JobRecordError
        naming the file when it is not a small regular file holding a JSON object."""
        if self.store.local:
            return read_local_record(path)
        size = self.store.size(path)
        if size > MAX_RECORD:
            raise JobRecordError(
                f"{path}: {size} bytes, more than a record may hold ({MAX_RECORD})"
            )
        return parse_record(path, self.store.read_bytes(path))

    def read_spec(self) -> dict[str, Any]:
        """job.json (JobRecordError naming the file if it is not a readable record)."""
        spec = self._read_record(self.spec)
        if not isinstance(spec.get("execution", {}), dict):
            raise JobRecordError(f"{self.spec}: 'execution' is not an object")
        return spec

    def read_status(self) -> dict[str, Any]:
        """status.json; Pending while there is none. A record that cannot be read or whose
        fields have the wrong types is state Unknown, with the reason in ``unreadable``."""
        try:
            return self._read_status_strict()
        except FileNotFoundError:
            return {"state": JobState.PENDING}
        except JobRecordError as exc:
            if self.store.local:
                return {"state": JobState.UNKNOWN, "unreadable": str(exc)}
        # an object store without atomic replace may show a record being rewritten
        time.sleep(0.05)
        try:
            return self._read_status_strict()
        except FileNotFoundError:
            return {"state": JobState.PENDING}
        except JobRecordError as exc:
            return {"state": JobState.UNKNOWN, "unreadable": str(exc)}

    def _status_bytes(self) -> bytes:
        """The bytes of status.json (FileNotFoundError when absent; JobRecordError when it
        is not a small regular file)."""
        if self.store.local:
            return read_local_file(self.status, MAX_RECORD)
        size = self.store.size(self.status)
        if size > MAX_RECORD:
            raise JobRecordError(
                f"{self.status}: {size} bytes, more than a record may hold ({MAX_RECORD})"
            )
        return self.store.read_bytes(self.status)

    def _read_status_strict(self, data: bytes | None = None) -> dict[str, Any]:
        if data is None:
            data = self._status_bytes()
        status = parse_status(self.status, data)
        for field, types in _STATUS_FIELDS.items():
            value = status.get(field)
            if value is not None and (
                not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
            ):
                raise JobRecordError(
                    f"{self.status}: field {field!r} is a {type(value).__name__}, not "
                    + " or ".join(t.__name__ for t in types)
                )
        if status.get("state") not in _STATES:
            raise JobRecordError(f"{self.status}: unknown state {status.get('state')!r}")
        return status

    def write_status(self, state: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json and set ``state`` (with a timestamp). A
        record that cannot be read is replaced; a folder that is a link is refused."""
        self.check_folder()
        previous = b""
        try:
            previous = self._status_bytes()
            current = self._read_status_strict(previous)
        except (FileNotFoundError, JobRecordError):
            current = {}
        now = time.time()
        if isinstance(fields.get("error"), dict):
            fields["error"] = {k: _clip(v) for k, v in fields["error"].items()}
        current.update(fields)
        current["state"] = state
        current["updated"] = now
        if state == JobState.IN_PROGRESS:
            current.setdefault("started", now)
        if state in JobState.TERMINAL:
            current.setdefault("ended", now)
        if not (
            self.store.local and previous and append_local_status(self.status, current, previous)
        ):
            self.store.write_bytes(self.status, status_line(current))
        return current


ROLES = ("function", "arguments", "results", "exception")
SMALL_BUNDLE = 1 << 20  # bytes of parts up to which a bundle is one file
MAX_BUNDLE_FILE = SMALL_BUNDLE + (64 << 20) + (1 << 20)  # parts + largest manifest + zip records


# What a content-addressed function bundle is written for (it is not signed: the digest
# in the signed execution record verifies it).
FUNCTION_PURPOSE = "remote-runtime function"

# Functions a warm worker decoded, by the digest of their bundle's bytes (each job's bundle
# is still read and checked against it), with their pickle right after decoding: a later
# job of the same bytes reuses the function only if it still pickles the same, that is if
# no job changed what travelled with it (its globals, defaults, attributes, closure). A
# pickle costs a trivial function ~16 us, decoding it ~60-110 us.
_decoded: dict[str, tuple[Any, bytes]] = {}
_DECODED_KEPT = 32


def _pickled(function: Any) -> bytes | None:
    """What ``function`` carries, as cloudpickle writes it (None: it cannot be pickled)."""
    try:
        import cloudpickle

        return bytes(cloudpickle.dumps(function, protocol=5))
    except Exception:
        return None


# Function bundles this process wrote, by (root, digest): (path, inode, size, mtime,
# ctime), so a later job of the same function hard-links the file (one link instead of a
# new file). The ctime changes with any write and cannot be set back, as an mtime can.
_written: dict[tuple[str, str], tuple[str, int, int, int, int]] = {}


def _remember_written(root: str, found: str, path: str) -> None:
    try:
        info = os.lstat(path)
    except OSError:
        return
    if len(_written) >= 256:
        try:
            _written.pop(next(iter(_written)), None)
        except (StopIteration, RuntimeError):  # emptied or changed by another thread
            pass
    _written[(root, found)] = (
        path,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
    )


def _link_written(root: str, found: str, path: str) -> bool:
    """Hard-link the function bundle with digest ``found`` that this process wrote under
    ``root`` to ``path``, if it is still there, unchanged (same inode, size and time);
    False when it must be written instead."""
    known = _written.get((root, found))
    if known is None:
        return False
    source, *seen = known
    try:
        info = os.lstat(source)
        if [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns] != seen:
            _written.pop((root, found), None)  # (changed: never linked again)
            return False
        os.link(source, path)  # (never follows a link: source was just lstat'ed)
        _remember_written(root, found, source)  # (a link is a change of the inode's ctime)
        return True
    except FileNotFoundError as exc:
        if exc.filename == source or not os.path.lexists(source):
            _written.pop((root, found), None)
            return False
        os.makedirs(os.path.dirname(path), exist_ok=True)  # the job's folder: first file
        try:
            os.link(source, path)
            _remember_written(root, found, source)
            return True
        except OSError:
            return False
    except OSError:  # EXDEV, EMLINK, EPERM, no hard links here
        _written.pop((root, found), None)
        return False


# The inputs are written before job.json, the job's commit point (no job is read before
# it exists), so they are written in place; results and exception are renamed into place.
INPUTS = ("function", "arguments")


_resolved_roots: set[str] = set()  # roots whose job folders were found to resolve inside

_STATES = frozenset(
    {JobState.PENDING, JobState.IN_PROGRESS, JobState.COMPLETED, JobState.FAILED, JobState.STOPPED}
)
# The types status.json's fields must have (anything else: the record is Unknown).
_STATUS_FIELDS: dict[str, tuple[type, ...]] = {
    "state": (str,),
    "stage": (str,),
    "attempt": (int,),
    "exit_code": (int,),
    "previous_exit_code": (int,),
    "pid": (int,),
    "pid_start": (int,),
    "boot_id": (str,),
    "host": (str,),
    "python": (str,),
    "started": (int, float),
    "ended": (int, float),
    "updated": (int, float),
    "function_started": (int, float),
    "error": (dict,),
    "backend": (dict,),
    "worker": (bool,),
    "died": (bool,),
    "timed_out": (bool,),
}
_MAX_TEXT = 64 * 1024  # characters of an error message or traceback kept in status.json


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        half = _MAX_TEXT // 2
        return f"{value[:half]}\n... ({len(value) - _MAX_TEXT} characters left out) ...\n{value[-half:]}"
    return value


def open_log(log_dir: str, stream: str) -> int:
    """A descriptor appending to ``<log_dir>/<stream>.log``. ``log_dir`` must be a real
    directory (made if missing) and the file a regular file of one name: never a symbolic
    or hard link (it would make the job append to a file outside its folder) nor a FIFO
    (it would block). JobRecordError otherwise."""
    import errno
    import stat

    if not check_real_folder(log_dir, "logs/ folder"):
        os.makedirs(log_dir, exist_ok=True)
        check_real_folder(log_dir, "logs/ folder")
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    path = os.path.join(log_dir, f"{stream}.log")
    folder = os.open(log_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow)
    try:
        fd = os.open(
            f"{stream}.log",
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | nofollow | os.O_NONBLOCK | os.O_CLOEXEC,
            0o644,
            dir_fd=folder,
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JobRecordError(
                f"{path} is a symbolic link: the job's logs are never written through a link"
            ) from None
        if exc.errno == errno.ENXIO:
            raise JobRecordError(f"{path} is a FIFO, not a regular file") from None
        raise
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise JobRecordError(f"{path} is {kind_of(info.st_mode)}, not a regular file")
    if info.st_nlink != 1:
        os.close(fd)
        raise JobRecordError(
            f"{path} is a hard link ({info.st_nlink} names): a job's logs are never written "
            "into a file that is also elsewhere"
        )
    os.set_blocking(fd, True)
    return fd


LOG_CHUNK = 8 << 20  # bytes of a log read at once: a log may be larger than memory


def read_log(log_dir: str, stream: str, offset: int, limit: int = LOG_CHUNK) -> bytes:
    """At most ``limit`` bytes of ``<log_dir>/<stream>.log`` from ``offset`` (a negative
    offset counts from its end: ``-n``, its last n bytes); b"" when it is absent or is not
    a regular file: a log is never read through a link or from a FIFO."""
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(os.path.join(log_dir, f"{stream}.log"), flags)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return b""
        f.seek(max(0, info.st_size + offset) if offset < 0 else offset)
        return f.read(limit)


def read_job_log(paths: JobPaths, stream: str, offset: int, limit: int = LOG_CHUNK) -> bytes:
    """At most ``limit`` bytes of a job's ``stdout`` or ``stderr`` log from ``offset`` in
    its folder (negative: from its end; b"" while there is none; locally never through a
    link nor from a FIFO: read_log)."""
    if paths.store.local:
        if not os.path.lexists(paths.stdout if stream == "stdout" else paths.stderr):
            spool = running_spool(paths)
            if spool is not None:  # a warm job running now: its output is in the spool
                return read_spool(f"{spool}.{stream}", offset, limit)
        return read_log(paths.logs, stream, offset, limit)
    path = f"{paths.logs}/{stream}.log"
    if offset < 0:
        try:
            offset = max(0, paths.store.size(path) + offset)
        except FileNotFoundError:
            return b""
    return paths.store.read_range(path, offset, offset + limit)


def read_spool(path: str, offset: int, limit: int = LOG_CHUNK) -> bytes:
    """At most ``limit`` bytes of a warm worker's spool file (in this user's cache) from
    ``offset`` (negative: from its end); b"" when absent."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size + offset) if offset < 0 else offset)
            return f.read(limit)
    except OSError:
        return b""


def running_spool(paths: JobPaths) -> str | None:
    """Where the output of this job is while a warm worker of this machine runs it (the
    spool the worker's claim log names), or None: the status must name a live worker on
    this host whose last claim is this very job (pid and start time included)."""
    try:
        status = paths.read_status()
    except Exception:
        return None
    pid = status.get("pid")
    if (
        status.get("state") != JobState.IN_PROGRESS
        or not status.get("worker")
        or status.get("host") != hostname()
        or type(pid) is not int
        or pid <= 1
    ):
        return None
    claim = claim_of(pid)
    if (
        claim is None
        or claim.get("job") != paths.name
        or claim.get("pid") != pid
        or claim.get("pid_start") != status.get("pid_start")
        or not isinstance(claim.get("spool"), str)
    ):
        return None
    return str(claim["spool"])


def job_log_size(paths: JobPaths, stream: str) -> int:
    """The size of a job's log in its folder (0 while there is none, or when it is not a
    regular file)."""
    import stat

    path = paths.stdout if stream == "stdout" else paths.stderr
    try:
        if paths.store.local:
            info = os.lstat(path)
            return info.st_size if stat.S_ISREG(info.st_mode) else 0
        return paths.store.size(path)
    except FileNotFoundError:
        return 0


def claims_dir() -> str:
    """Where warm workers record which job they run: this user's cache (mode 0700), never
    the job root. What proves a worker is a job's process (``claim_of``)."""
    return os.path.join(cache_dir(), "running")


def claim_log(folder: str, pid: int) -> str:
    """The claim log of the warm worker ``pid``: one JSON record per line, appended when
    it takes a job (``{"job": name, pid, pid_start, boot_id}``) and when it ends one
    (``"job": null``); the last complete line is what the worker runs now."""
    return os.path.join(folder, f"worker-{int(pid)}.jsonl")


def claim_of(pid: int) -> dict[str, Any] | None:
    """The last claim of warm worker ``pid`` in this user's cache (None when it has none
    or it cannot be read)."""
    path = claim_log(claims_dir(), pid)
    try:
        return parse_status(path, read_local_file(path, MAX_RECORD))
    except (OSError, ValueError):  # (JobRecordError is a ValueError)
        return None


def job_spec(
    name: str, function_qualname: str, settings: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """The contents of job.json: never a secret. Environment variables are recorded by
    name only: their values reach the job through the launch channel."""
    import platform

    settings = dict(settings)
    if isinstance(settings.get("environment_variables"), Mapping):
        settings["environment_variables"] = sorted(settings["environment_variables"])
    return {
        "name": name,
        "function": function_qualname,
        "settings": settings,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": f"{sys.platform}-{platform.machine()}",
        "client_host": hostname(),
        "client_pid": os.getpid(),
        "created": time.time(),
        "libraries": _library_versions(),
        **extra,
    }


def _library_versions() -> dict[str, str]:
    loaded = tuple(
        dist for dist, module in _LIBRARIES.items() if module is None or module in sys.modules
    )
    return dict(_versions_of(loaded))


@functools.lru_cache(maxsize=16)
def _versions_of(dists: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in dists:
        try:
            out.append((dist, version(dist)))
        except PackageNotFoundError:
            pass
    return tuple(out)


# Distributions whose versions job.json records (those already imported by the client).
_LIBRARIES = {
    "remote-runtime": None,
    "cloudpickle": None,
    "numpy": "numpy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "torch": "torch",
    "xgboost": "xgboost",
    "scikit-learn": "sklearn",
    "tensorflow": "tensorflow",
}


class _VerifiedTrust:
    """The types trusted in bundles verified with a job's key (scikit-learn's internal
    types, which skops does not trust from a stranger), handed to the loader as the
    ``trusted`` option without importing the scikit-learn codec: a job whose bundles hold
    no estimator never pays for that import (zipfile and more, ~7 ms of a cold job)."""

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Any:
        from remote_codecs.codecs.sklearn import SCIKIT_LEARN_INTERNAL_TYPES

        return iter(SCIKIT_LEARN_INTERNAL_TYPES)


VERIFIED_TRUST = _VerifiedTrust()


# -- the signed execution record ----------------------------------------------------------------


def sign_execution(key: bytes, execution: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the canonical JSON of the execution record in job.json."""
    import hashlib
    import hmac
    import json

    body = json.dumps(execution, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
