"""Reading the job folder's own records (job.json, status.json) without trusting them.

Whoever can write the job root can replace a record with anything: not JSON, a list, a
FIFO (an ``open()`` that never returns), a symbolic link, a file of many gigabytes, a
document nested a million levels deep. Every record is read here: a regular file only
(``O_NOFOLLOW | O_NONBLOCK`` locally), at most ``MAX_RECORD`` bytes, a JSON object, and
every failure is a :class:`JobRecordError` that names the file and says why.

Only the standard library: the job's interpreter precheck reads job.json through this
module before anything else of the project can be imported.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any

__all__ = [
    "MAX_RECORD",
    "JobRecordError",
    "append_local_status",
    "check_real_folder",
    "kind_of",
    "parse_record",
    "parse_status",
    "printable",
    "read_local_file",
    "read_local_record",
    "status_line",
]

MAX_RECORD = 8 * 1024 * 1024  # bytes; job.json and status.json are a few KB


class JobRecordError(ValueError):
    """A record of the job folder (job.json, status.json) or the folder itself cannot be
    trusted: unreadable, not a regular file, too large, not a JSON object, a symbolic link.
    The message names the file and the reason."""


def parse_record(path: str, data: bytes, limit: int = MAX_RECORD) -> dict[str, Any]:
    """The JSON object in ``data`` (the bytes of ``path``), or JobRecordError."""
    if len(data) > limit:
        raise JobRecordError(f"{path}: {len(data)} bytes, more than a record may hold ({limit})")
    try:
        value = json.loads(data)
    except RecursionError:
        raise JobRecordError(f"{path}: JSON nested too deeply to be a job record") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise JobRecordError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise JobRecordError(f"{path}: a JSON {type(value).__name__}, not an object")
    return value


def read_local_record(path: str, limit: int = MAX_RECORD) -> dict[str, Any]:
    """Read the record at local ``path``: a regular file (never followed through a link,
    never a FIFO or device), at most ``limit`` bytes. FileNotFoundError when absent."""
    return parse_record(path, read_local_file(path, limit), limit)


def _open_regular(path: str, flags: int, verb: str) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file at ``path`` (opened with ``flags``, never through
    a symbolic link, never blocking on a FIFO) and its stat; JobRecordError naming the
    file otherwise, FileNotFoundError when absent."""
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JobRecordError(f"{path} is a symbolic link: records are never followed") from None
        raise JobRecordError(f"{path}: cannot be {verb} ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise JobRecordError(f"{path} is {kind_of(info.st_mode)}, not a regular file")
    return fd, info


def read_local_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file at local ``path`` (never followed through a link,
    never a FIFO or device), at most ``limit`` of them, else JobRecordError naming it.
    FileNotFoundError when absent."""
    fd, info = _open_regular(path, os.O_RDONLY, "read")
    try:
        if info.st_size > limit:
            raise JobRecordError(f"{path}: {info.st_size} bytes, more than it may hold ({limit})")
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    if left <= 0:  # it grew past the limit while it was read
        raise JobRecordError(f"{path}: more than {limit} bytes, more than it may hold")
    return b"".join(chunks)


# -- status.json: one record per transition --------------------------------------------
#
# status.json holds one JSON object per line; the last complete line (ending in a
# newline) is the job's status. Locally each transition appends one line with a single
# write (no file is replaced: a replace costs ~0.2 ms on ext4, an append ~5 us); the first
# record, and a log past STATUS_COMPACT bytes, are written whole, atomically. Object stores
# (no append) write the whole file, one line. A file without a newline is a record written
# whole by an earlier version.

STATUS_COMPACT = 64 * 1024  # bytes of status.json past which it is rewritten as one line


def parse_status(path: str, data: bytes, limit: int = MAX_RECORD) -> dict[str, Any]:
    """The current record of the status log ``data`` (the bytes of ``path``), or
    JobRecordError. Bytes after the last newline are an append still being written (or
    cut by a crash): they are not a record yet."""
    end = data.rfind(b"\n")
    if end == -1:
        return parse_record(path, data, limit)
    for line in reversed(data[:end].split(b"\n")):
        if line.strip():
            return parse_record(path, line, limit)
    raise JobRecordError(f"{path}: no record in it")


def status_line(record: dict[str, Any]) -> bytes:
    """One record of the status log, as written (sorted keys, one line)."""
    return json.dumps(record, sort_keys=True).encode() + b"\n"


def append_local_status(path: str, record: dict[str, Any], previous: bytes) -> bool:
    """Append ``record`` to the local status log at ``path`` whose content was
    ``previous``; False when it must be written whole instead (the file is gone, has
    grown past STATUS_COMPACT, or has other names: a hard link to a file elsewhere).
    Never through a link, never into anything but a regular file (JobRecordError)."""
    if len(previous) > STATUS_COMPACT:
        return False
    try:
        fd, info = _open_regular(path, os.O_WRONLY | os.O_APPEND, "written")
    except FileNotFoundError:
        return False
    try:
        if info.st_nlink != 1:
            return False  # a hard link planted there: replaced, never written through
        line = status_line(record)
        if previous and not previous.endswith(b"\n"):
            line = b"\n" + line  # after a record written whole, or a cut append
        os.write(fd, line)  # one write: appends are never interleaved
    finally:
        os.close(fd)
    return True


def check_real_folder(path: str, what: str = "folder") -> bool:
    """True if ``path`` is a real directory, False if it does not exist; JobRecordError if
    it is a symbolic link or anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise JobRecordError(
            f"{path} is a symbolic link: the job {what} must be a real directory inside the "
            "job root (something planted it; the job writes nothing through it)"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise JobRecordError(f"{path} is {kind_of(info.st_mode)}, not a directory")
    return True


def printable(value: Any, limit: int = 4096) -> str:
    """``value`` as text that is safe to print to a terminal: control and format
    characters (escape sequences, carriage returns, bidirectional overrides) are shown as
    escapes, and at most ``limit`` characters are kept. For any string from the folder."""
    import unicodedata

    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch)[0] in "CZ" and ch != " "
        else ch
        for ch in text
    )


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words ("a FIFO", "a symbolic link" ...)."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"
