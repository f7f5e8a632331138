"""Where bundle files go: a folder on any fsspec URI, or one in-memory zip.

Every file is hashed (BLAKE3; sha256 is also read) while it is written and verified
while it is read. A large buffer is written by the caller's thread while a helper thread
hashes the same buffer, neither waiting for the other until both are done; a file that
receives such a buffer is hashed by BLAKE3 on every core (``blake3(max_threads=AUTO)``:
the standard digest, computed by several threads), so the hash takes the core the writer
leaves and, once the writer is done, all of them (``_write_hashing``). (hashlib, blake3
and file I/O all release the GIL.) A large local write first reserves its disk space
(``_preallocate``). A large local file is read by two threads taking alternate pieces,
each hashing the piece it has just read, in file order (``_split_io``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

from .errors import DeserializationError, IntegrityError

__all__ = [
    "FileRecord",
    "FolderSink",
    "FolderSource",
    "Sink",
    "Source",
    "ZipSink",
    "ZipSource",
    "resolve",
]

MANIFEST = "manifest.json"
CHUNK = 4 << 20
_SMALL = 1 << 20
_BUNDLE_FILE = re.compile(r"^(\d+[.\w-]*|skeleton(-[0-9a-f]+)?\.pkl|\.manifest\.json\.tmp-\w+)$")

# Files are hashed with BLAKE3 (a cryptographic hash, ~3x faster than sha256 on this
# class of machine, which keeps hashing off the critical path); sha256 is still read.
HASH = "blake3"


def new_hasher(alg: str = HASH, parallel: bool = False) -> Any:
    """A hashlib-style hasher for ``alg`` ("blake3" or "sha256").

    ``parallel``: a BLAKE3 hasher whose large updates run on every core (blake3's own
    thread pool; the digest is the same), except in a process forked from one whose pool
    had started (its threads did not survive the fork: one thread there)."""
    if alg == "sha256":
        return hashlib.sha256()
    if alg == "blake3":
        import blake3

        global _rayon_pid
        if not parallel or _rayon_pid not in (None, os.getpid()):
            return blake3.blake3()
        _rayon_pid = os.getpid()
        return blake3.blake3(max_threads=blake3.blake3.AUTO)
    raise DeserializationError(f"unknown hash algorithm {alg!r}; upgrade remote-runtime")


# The process that started blake3's process-wide thread pool (rayon's): a child forked
# from it inherits the pool without its threads, and a parallel update there would wait
# forever, so it hashes on one thread.
_rayon_pid: int | None = None


def digest_of(hasher: Any, alg: str = HASH) -> str:
    return f"{alg}:{hasher.hexdigest()}"


_pools: dict[str, ThreadPoolExecutor] = {}
_pool_lock = threading.Lock()


def _forget_pools() -> None:
    """In a forked child: the parent's pools have no threads here (a task given to one
    would wait forever); the child makes its own on first use."""
    global _pool_lock
    _pools.clear()
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _pool(name: str, workers: int) -> ThreadPoolExecutor:
    """A process-wide thread pool, made on first use (threads are idle otherwise)."""
    pool = _pools.get(name)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        with _pool_lock:
            pool = _pools.get(name)
            if pool is None:
                pool = _pools[name] = ThreadPoolExecutor(
                    workers, thread_name_prefix=f"remote-codecs-{name}"
                )
    return pool


def _hash_pool() -> ThreadPoolExecutor:
    return _pool("hash", 1)


def as_bytes_view(data: Any) -> memoryview:
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.ndim != 1 or view.format != "B" or not view.contiguous:
        view = view.cast("B") if view.contiguous else memoryview(bytes(view))
    return view


@dataclass(frozen=True)
class FileRecord:
    """A file of a bundle: its name, size and digest (``"<alg>:<hex>"``)."""

    name: str
    size: int
    digest: str

    @property
    def algorithm(self) -> str:
        return self.digest.partition(":")[0]


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it.

    Its hasher is chosen at the first write over ``_SMALL`` bytes: the bytes of the small
    writes before it (at most ``_SMALL`` in all) are kept, unhashed, until then, so that a
    file that receives a large buffer (an array after its header) is hashed on every core
    from its first byte, and a small file never starts a thread. Once a large write
    failed, the file takes no more writes and gets no record.
    """

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._raw = raw
        self.name = name  # type: ignore[misc]
        self._hash: Any = None  # made by _hasher
        self._head = bytearray()  # small writes not hashed yet (while _hash is None)
        self._failed = False
        self.size = 0
        self.record: FileRecord | None = None

    def writable(self) -> bool:
        return True

    def _hasher(self, parallel: bool) -> Any:
        if self._hash is None:
            self._hash = new_hasher(parallel=parallel)
            self._hash.update(self._head)
            self._head = bytearray()
        return self._hash

    def write(self, data: Any) -> int:
        if self._failed:
            raise OSError(f"{self.name}: an earlier write failed; the file is incomplete")
        view = as_bytes_view(data)
        n = len(view)
        if n <= _SMALL:
            if self._hash is None and len(self._head) + n <= _SMALL:
                self._head += view
            else:
                self._hasher(parallel=False).update(view)
            self._raw.write(view)
        else:
            if n >= PREALLOCATE_MIN:
                _preallocate(self._raw, n, self.name)
            try:
                _write_hashing(self._raw, view, self._hasher(parallel=True))
            except BaseException:
                self._failed = True
                raise
        self.size += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
            if not self._failed:
                digest = digest_of(self._hasher(parallel=False))
                self.record = FileRecord(self.name, self.size, digest)
        super().close()


# A large buffer is written in WRITE_CHUNK pieces and hashed in HASH_PIECE pieces: a
# write that fails stops the hash at the next piece (the caller's buffer is never read
# once ``_write_hashing`` returned or raised), and pieces this large cost the parallel
# hash little (64 MiB pieces: ~5% over one update of 512 MiB).
WRITE_CHUNK = 4 << 20
HASH_PIECE = 256 << 20


def _write_hashing(raw: Any, view: memoryview, hasher: Any) -> None:
    """Write ``view`` to ``raw`` while a pool thread hashes it into ``hasher``.

    The two run unsynchronised (the hash reads the caller's buffer, not what was
    written), so the writer never waits for the hash: on two cores with a parallel
    hasher, the write keeps one core, the hash takes the other, and both once the write
    is done. (Measured on 2 cores, 512 MiB, medians: ~108 ms, against ~115-120 ms for
    the write of each 4 MiB chunk in lockstep with the hash of the previous one on one
    thread; the floor is the two's CPU time over two cores, (~78 + ~115) / 2 ~ 97 ms,
    against ~75-82 ms for np.save.) Returns or raises only once the hashing thread is
    done."""
    n = len(view)
    stop = threading.Event()

    def hash_all() -> None:
        for start in range(0, n, HASH_PIECE):
            if stop.is_set():
                return
            hasher.update(view[start : start + HASH_PIECE])

    hashing = _hash_pool().submit(hash_all)
    try:
        for start in range(0, n, WRITE_CHUNK):
            raw.write(view[start : start + WRITE_CHUNK])
    except BaseException:
        stop.set()
        hashing.exception()  # wait: the hash reads the caller's buffer until it stops
        raise
    hashing.result()


# Like numpy's own tofile (np.save): a local file about to receive this many bytes or
# more gets its disk space first (fallocate, FALLOC_FL_KEEP_SIZE), so the filesystem
# does not allocate page by page while the bytes are copied (a 512 MiB write on ext4:
# ~75 ms instead of ~105 ms) and a full disk fails before anything is written.
PREALLOCATE_MIN = 16 << 20
_fallocate: Any = None


def _preallocate(f: Any, n: int, name: str) -> None:
    """Reserve ``n`` bytes at ``f``'s position (a local file); a filesystem that cannot is
    left to allocate as it writes; only a full disk is an error."""
    global _fallocate
    raw = f.raw if isinstance(f, io.BufferedWriter) else f
    if not isinstance(raw, io.FileIO):
        return
    if _fallocate is None:
        _fallocate = False
        if os.uname().sysname == "Linux":
            import ctypes

            fn = getattr(ctypes.CDLL(None, use_errno=True), "fallocate", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
                _fallocate = fn
    if not _fallocate:
        return
    import ctypes

    f.flush()
    keep_size = 1  # FALLOC_FL_KEEP_SIZE: the file's size still grows only as it is written
    if _fallocate(raw.fileno(), keep_size, f.tell(), n) != 0:
        err = ctypes.get_errno()
        if err == 28:  # ENOSPC
            raise OSError(
                err,
                f"no space left on the device for the {n} bytes of {name}; free some space "
                "or save elsewhere",
            )


# -- names and limits ---------------------------------------------------------------------

# A bundle's file names come from its manifest, which an attacker may have written: they
# must be plain names inside the bundle (no separators, no "..", no absolute paths, no
# control characters), checked before any path is built from them.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
MAX_MANIFEST = 64 << 20  # bytes; a manifest is JSON metadata, far below this


def check_name(name: Any, where: str) -> str:
    """``name`` if it is a safe bundle file name, else DeserializationError."""
    if not isinstance(name, str) or not _FILE_NAME.match(name) or ".." in name:
        raise DeserializationError(
            f"{where}: the manifest names the file {str(name)[:80]!r}, which is not a plain "
            "file name inside the bundle; the bundle is corrupted or was tampered with"
        )
    return name


# -- sinks ------------------------------------------------------------------------------


class Sink:
    """Receives a bundle's files, then its manifest (the commit)."""

    tag = ""  # put in every file name of this write (see bundle.file_prefix)

    def open(self, name: str) -> HashingWriter:
        raise NotImplementedError

    def commit(self, manifest: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Called when encoding failed; the manifest was never written."""


class FolderSink(Sink):
    """A bundle as a folder on any fsspec filesystem, published in one step.

    Locally the bundle is written into a temporary sibling folder and moved into place
    with one rename (an atomic exchange when a bundle is already there), so concurrent
    writers leave one whole bundle and a reader sees the old bundle or the new one. On
    object stores the manifest is written last, in one PUT.
    """

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/") or "/"
        self.local = _is_local(fs)
        self._written: list[str] = []
        self._uploads: list[_Spool] = []
        self._tmp: str | None = None
        self._prepare()

    def _join(self, name: str) -> str:
        return f"{self._tmp or self.path}/{name}"

    def _prepare(self) -> None:
        fs, path = self.fs, self.path
        if self.local:
            if os.path.lexists(path):
                if not os.path.isdir(path) or os.path.islink(path):
                    raise FileExistsError(
                        f"{path} exists and is not a folder: cannot save a bundle there"
                    )
                self._check_replaceable(os.listdir(path))
            parent, base = os.path.split(path)
            self._tmp = os.path.join(parent, f".{base}.tmp-{os.urandom(6).hex()}")
            try:
                os.mkdir(self._tmp, 0o755)
            except FileNotFoundError:  # the parent is made only when missing
                os.makedirs(parent, exist_ok=True)
                os.mkdir(self._tmp, 0o755)
            return
        # Object stores: this write's files carry a tag of their own, so concurrent
        # writers never overwrite each other's parts; the previous bundle stays readable
        # until the new manifest replaces it, then its files are removed.
        self.tag = os.urandom(6).hex()  # (not uuid: importing it costs more than a small job)
        try:
            names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        except FileNotFoundError:
            names = []
        self._previous: list[str] = []
        if names:
            self._check_replaceable(names)
        if MANIFEST in names:
            self._previous = _files_of(fs.cat_file(self._join(MANIFEST)), set(names))

    def _check_replaceable(self, names: list[str]) -> None:
        foreign = [n for n in names if n != MANIFEST and not _BUNDLE_FILE.match(n)]
        if foreign:
            raise FileExistsError(
                f"{self.path} holds files that are not part of a bundle ({', '.join(sorted(foreign)[:5])}); "
                "save to a new or empty folder"
            )

    def open(self, name: str) -> HashingWriter:
        path = self._join(name)
        self._written.append(path)
        if self.local:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
            return HashingWriter(os.fdopen(fd, "wb"), name)
        spool = _Spool(self.fs, path)
        self._uploads.append(spool)
        return HashingWriter(spool, name)  # type: ignore[arg-type]

    def _wait_uploads(self) -> None:
        for spool in self._uploads:
            spool.wait()

    def abort(self) -> None:
        if self.local:
            if self._tmp is not None:
                _remove_tree(self._tmp)
                self._tmp = None
            return
        for spool in self._uploads:
            try:
                spool.wait()
            except Exception:
                pass
        for path in self._written:
            try:
                self.fs.rm_file(path)
            except Exception:
                pass

    def commit(self, manifest: bytes) -> None:
        self._wait_uploads()  # every part is stored before the manifest makes them a bundle
        if not self.local:
            self.fs.pipe_file(f"{self.path}/{MANIFEST}", manifest)  # one PUT: atomic
            stale = [self._join(n) for n in self._previous]
            if stale:
                try:
                    self.fs.rm(stale)  # the previous bundle's files; leftovers are gc's
                except Exception:
                    pass
            return
        assert self._tmp is not None
        fd = os.open(self._join(MANIFEST), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(manifest)
        tmp, self._tmp = self._tmp, None
        _publish(tmp, self.path)


def _files_of(manifest: bytes, present: set[str]) -> list[str]:
    """The files a previous manifest names (removed once a new bundle replaced it)."""
    import json

    try:
        raw = json.loads(manifest)
        names = [f["name"] for p in raw["parts"] for f in p.get("files", ())]
        if raw["skeleton"].get("kind") == "pickle":
            names.append(raw["skeleton"]["file"])
    except Exception:
        return []
    return [n for n in names if isinstance(n, str) and n in present and _BUNDLE_FILE.match(n)]


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _remove_tree(path: str) -> None:
    """Remove a folder we made (a symlink put in its place is removed, never followed)."""
    import shutil

    if os.path.islink(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


_renameat2: Any = None


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        if os.uname().sysname == "Linux":
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = getattr(libc, "renameat2", None)
            if fn is not None:
                fn.argtypes = [
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_uint,
                ]
                _renameat2 = fn
    if not _renameat2:
        return False
    import ctypes

    at_fdcwd, rename_exchange = -100, 2
    if _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem cannot
        return False
    raise OSError(err, os.strerror(err), b)


def _publish(tmp: str, path: str) -> None:
    """Make the finished bundle folder ``tmp`` visible at ``path`` in one step."""
    for _ in range(100):
        try:
            os.rename(tmp, path)  # nothing there yet: one atomic rename
            return
        except OSError as exc:
            if exc.errno not in (17, 39, 21, 20):  # EEXIST, ENOTEMPTY, EISDIR, ENOTDIR
                raise
        try:
            swapped = _exchange(tmp, path)
        except FileNotFoundError:
            continue  # the old bundle went away meanwhile: rename again
        if swapped:
            _remove_tree(tmp)  # ``tmp`` now names the previous bundle
            return
        # No atomic exchange here: move the old bundle aside, then ours in (a reader
        # retries across the short gap).
        old = f"{tmp}.old"
        try:
            os.rename(path, old)
        except FileNotFoundError:
            continue
        try:
            os.rename(tmp, path)
        finally:
            _remove_tree(old)
        return
    raise OSError(f"could not publish the bundle at {path}: it keeps changing")


SPOOL_IN_MEMORY = 8 << 20


def _uploads() -> ThreadPoolExecutor:
    return _pool("io", 8)


class _Spool(io.RawIOBase):
    """A part file for an object store: kept in memory (or a temporary file past 8 MiB)
    while the codec writes it, then uploaded in the background, so the parts of a bundle
    upload concurrently; the manifest waits for all of them."""

    def __init__(self, fs: Any, path: str) -> None:
        self._fs = fs
        self._path = path
        self._buffer: Any = io.BytesIO()
        self._on_disk = False
        self._future: Future[None] | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n: int = self._buffer.write(data)
        if not self._on_disk and self._buffer.tell() > SPOOL_IN_MEMORY:
            import tempfile

            disk = tempfile.NamedTemporaryFile(prefix="remote-codecs-", delete=False)  # noqa: SIM115
            disk.write(self._buffer.getbuffer())
            self._buffer = disk
            self._on_disk = True
        return n

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self._on_disk:
            self._buffer.close()
            name = self._buffer.name
            self._future = _uploads().submit(self._upload_file, name)
        else:
            self._future = _uploads().submit(
                self._fs.pipe_file, self._path, self._buffer.getvalue()
            )

    def _upload_file(self, name: str) -> None:
        try:
            self._fs.put_file(name, self._path)
        finally:
            os.remove(name)

    def wait(self) -> None:
        if self._future is not None:
            self._future.result()


class ZipSink(Sink):
    """A bundle as one zip (stored, not compressed) held in memory. Its bytes depend only
    on what is written (every entry dated 1980-01-01): the same value makes the same
    bundle, which content addressing relies on. A bounded sink (``max_size``: the small
    bundles of a runtime) writes the zip itself, without :mod:`zipfile`'s generality."""

    def __init__(self, max_size: int | None = None) -> None:
        import zipfile

        self.max_size = max_size
        self._written = 0
        self.buffer = io.BytesIO()
        self._members: list[tuple[str, _Member]] | None = None
        if max_size is None:
            self._zip: Any = zipfile.ZipFile(self.buffer, "w", zipfile.ZIP_STORED)
        else:
            self._zip, self._members = None, []

    def open(self, name: str) -> HashingWriter:
        raw: Any
        if self._members is not None:
            raw = _Member()
            self._members.append((name, raw))
        else:
            raw = self._zip.open(_entry(name), "w", force_zip64=True)
        if self.max_size is not None:
            raw = _Bounded(raw, self)
        return HashingWriter(raw, name)

    def commit(self, manifest: bytes) -> None:
        if self._members is not None:
            members = [(name, b"".join(m.chunks)) for name, m in self._members]
            self.buffer = io.BytesIO(_stored_zip([*members, (MANIFEST, manifest)]))
            return
        self._zip.writestr(_entry(MANIFEST), manifest)
        self._zip.close()

    def abort(self) -> None:
        try:
            if self._zip is not None:
                self._zip.close()
        except Exception:
            pass

    def getvalue(self) -> bytes:
        return self.buffer.getvalue()


def _entry(name: str) -> Any:
    import zipfile

    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o600 << 16
    return info


class _Member:
    """The bytes of one entry of a bounded ZipSink, as written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        return len(chunk)

    def close(self) -> None:
        pass


# -- the zip format, for the small bundles this library writes and reads most ----------
#
# A stored zip (APPNOTE 4.3): per entry a local header, then its bytes; then one central
# directory record per entry; then the end record. ``_stored_zip`` writes exactly what
# zipfile writes for such entries (version 2.0, no extra field, dated 1980-01-01, mode
# 0600). ``_stored_entries`` reads back only zips of exactly that shape, field by field,
# and answers None for anything else (comments, zip64, compression, data descriptors, duplicate or
# overlapping entries, prepended bytes), which :mod:`zipfile` then reads as before.

_EPOCH = (1980, 1, 1, 0, 0, 0)
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # signature .. extra length: 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # signature .. header offset: 46 bytes
_END = struct.Struct("<IHHHHIIH")  # 22 bytes
_UNIX_20 = (3 << 8) | 20  # made by: unix, version 2.0
_MAX_32 = 0xFFFFFFFF


def _stored_zip(members: list[tuple[str, bytes]]) -> bytes:
    import zlib

    out: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for name, data in members:
        raw_name = name.encode("ascii")
        crc = zlib.crc32(data)
        size = len(data)
        if size > _MAX_32 or offset > _MAX_32:
            raise ValueError("a bounded bundle zip holds less than 4 GiB")
        local = _LOCAL.pack(0x04034B50, 20, 0, 0, 0, _DOS_DATE, crc, size, size, len(raw_name), 0)
        out += (local, raw_name, data)
        central.append(
            _CENTRAL.pack(
                0x02014B50,
                _UNIX_20,
                20,
                0,
                0,
                0,
                _DOS_DATE,
                crc,
                size,
                size,
                len(raw_name),
                0,
                0,
                0,
                0,
                0o600 << 16,
                offset,
            )
            + raw_name
        )
        offset += len(local) + len(raw_name) + size
    directory = b"".join(central)
    end = _END.pack(0x06054B50, 0, 0, len(members), len(members), len(directory), offset, 0)
    return b"".join([*out, directory, end])


def _stored_entries(data: memoryview) -> dict[str, tuple[int, int, int]] | None:
    """``{name: (offset of its bytes, size, crc32)}`` of a canonical stored zip (see
    above), or None when ``data`` is not one (zipfile decides what it is)."""
    n = len(data)
    if n < _END.size:
        return None
    sig, disk, cd_disk, count, total, cd_size, cd_offset, comment = _END.unpack_from(
        data, n - _END.size
    )
    if (
        sig != 0x06054B50
        or disk
        or cd_disk
        or comment
        or count != total
        or cd_offset + cd_size != n - _END.size
    ):
        return None
    entries: dict[str, tuple[int, int, int]] = {}
    pos, end_of_data = cd_offset, 0
    for _ in range(count):
        if pos + _CENTRAL.size > cd_offset + cd_size:
            return None
        (
            sig,
            made,
            need,
            flags,
            method,
            t,
            d,
            crc,
            csize,
            size,
            name_len,
            extra_len,
            comment_len,
            disk,
            internal,
            external,
            offset,
        ) = _CENTRAL.unpack_from(data, pos)
        name_end = pos + _CENTRAL.size + name_len
        if (
            (sig, made, need, flags, method, t, d) != (0x02014B50, _UNIX_20, 20, 0, 0, 0, _DOS_DATE)
            or (extra_len, comment_len, disk, internal, external) != (0, 0, 0, 0, 0o600 << 16)
            or csize != size
            or offset != end_of_data
            or name_end > cd_offset + cd_size
        ):
            return None
        raw_name = bytes(data[pos + _CENTRAL.size : name_end])
        if offset + _LOCAL.size > cd_offset:
            return None
        (lsig, lneed, lflags, lmethod, lt, ld, lcrc, lcsize, lsize, lname_len, lextra_len) = (
            _LOCAL.unpack_from(data, offset)
        )
        start = offset + _LOCAL.size + lname_len
        if (
            (lsig, lneed, lflags, lmethod, lt, ld, lextra_len)
            != (0x04034B50, 20, 0, 0, 0, _DOS_DATE, 0)
            or (lcrc, lcsize, lsize) != (crc, csize, size)
            or bytes(data[offset + _LOCAL.size : start]) != raw_name
            or start + size > cd_offset
        ):
            return None
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            return None
        if name in entries:
            return None
        entries[name] = (start, size, crc)
        pos, end_of_data = name_end, start + size
    if pos != cd_offset + cd_size or end_of_data != cd_offset:
        return None
    return entries


class TooLarge(BaseException):
    """A bounded ZipSink (``max_size``) was handed more bytes than its bound. (A
    BaseException: codecs and the skeleton encoder turn ordinary exceptions into
    SerializationError, and this one must reach ``dumps_if_small`` as it is.)"""


class _Bounded:
    """A zip member writer that refuses, before buffering them, the bytes that would take
    its sink past ``max_size`` (so a large part never lands in memory)."""

    def __init__(self, raw: BinaryIO, sink: ZipSink) -> None:
        self._raw, self._sink = raw, sink

    def write(self, data: Any) -> int:
        n = len(as_bytes_view(data))
        self._sink._written += n
        assert self._sink.max_size is not None
        if self._sink._written > self._sink.max_size:
            raise TooLarge
        return self._raw.write(data)

    def close(self) -> None:
        self._raw.close()


# -- sources ----------------------------------------------------------------------------


class Source:
    """Reads a bundle's manifest and files, verifying each file against its record.

    ``check`` is the audit of the files themselves: every file named by the manifest
    exists, is a regular file (never a link, FIFO or device) and has exactly its
    recorded size, before a byte of it is read or a buffer allocated for it.
    """

    description: str
    # what the underlying reader raises on corruption
    _read_error: tuple[type[Exception], ...] = (OSError,)

    def read_manifest(self) -> bytes:
        raise NotImplementedError

    def check(self, records: list[FileRecord]) -> None:
        """Refuse the bundle unless every file is a regular file of its recorded size."""

    def prefetch(self, records: list[FileRecord]) -> None:
        """Fetch these files ahead, concurrently (a no-op where reads are local)."""

    def replaced(self) -> bool:
        """Whether another bundle was published at this place since the manifest was read."""
        return False

    def close(self) -> None:
        """Release what ``prefetch`` kept."""

    def _open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def _mismatch(self, name: str, what: str) -> IntegrityError:
        return IntegrityError(
            f"{self.description}: {name} {what}; the bundle is corrupted or was tampered with"
        )

    def _check_one(self, record: FileRecord, kind_ok: bool, size: int | None, kind: str) -> None:
        if not kind_ok:
            raise self._mismatch(record.name, f"is {kind}, not a regular file")
        if size is not None and size != record.size:
            what = "truncated" if size < record.size else "longer than recorded"
            raise self._mismatch(
                record.name, f"is {what} ({size} bytes; the manifest records {record.size})"
            )

    def read(self, record: FileRecord) -> bytes:
        buf = bytearray(record.size)
        self.read_into(record, [memoryview(buf)])
        return bytes(buf)

    def read_into(self, record: FileRecord, buffers: Iterable[memoryview]) -> None:
        views = [as_bytes_view(b) for b in buffers]
        total = sum(len(v) for v in views)
        if total != record.size:
            raise DeserializationError(
                f"{self.description}: {record.name} is recorded as {record.size} bytes, "
                f"but the codec expects {total}"
            )
        digest = new_hasher(record.algorithm)
        try:
            f = self._open(record.name)
        except FileNotFoundError:
            raise IntegrityError(
                f"{self.description}: part file {record.name} is missing"
            ) from None
        unreadable: tuple[type[Exception], ...] = (EOFError, *self._read_error)
        try:
            if total >= PARALLEL_MIN and _preadable(f):
                self._read_verified_parallel(f, record, views, digest)
            else:
                self._read_verified(f, record, views, digest)
        except DeserializationError:
            raise  # (says what it is already)
        except unreadable as exc:
            raise IntegrityError(
                f"{self.description}: part file {record.name} unreadable: {exc}"
            ) from None
        if digest_of(digest, record.algorithm) != record.digest:
            raise IntegrityError(
                f"{self.description}: part file {record.name} does not match its {record.algorithm} digest "
                "(corrupted or tampered with)"
            )

    def _read_verified(
        self, f: BinaryIO, record: FileRecord, views: list[memoryview], digest: Any
    ) -> None:
        with f:
            pending: Future[None] | None = None
            for chunk in _chunks(views):
                got = _readinto_full(f, chunk)
                if got < len(chunk):
                    raise IntegrityError(
                        f"{self.description}: part file {record.name} is truncated "
                        f"(expected {record.size} bytes)"
                    )
                if len(chunk) <= _SMALL:
                    if pending is not None:
                        pending.result()
                        pending = None
                    digest.update(chunk)
                else:
                    if pending is not None:
                        pending.result()
                    pending = _hash_pool().submit(digest.update, chunk)
            if pending is not None:
                pending.result()
            if f.read(1):
                raise IntegrityError(
                    f"{self.description}: part file {record.name} is longer than recorded "
                    f"({record.size} bytes)"
                )

    def _read_verified_parallel(
        self, f: BinaryIO, record: FileRecord, views: list[memoryview], digest: Any
    ) -> None:
        """Read a local file straight into ``views`` with :func:`_split_io`; every piece
        must be there in full, and nothing past the recorded size."""
        with f:
            fd = f.fileno()

            def read(chunk: memoryview, offset: int) -> None:
                if _pread_full(fd, chunk, offset) < len(chunk):
                    raise IntegrityError(
                        f"{self.description}: part file {record.name} is truncated "
                        f"(expected {record.size} bytes)"
                    )

            _split_io(list(_positioned_chunks(views, 0)), read, digest)
            if os.pread(fd, 1, record.size):
                raise IntegrityError(
                    f"{self.description}: part file {record.name} is longer than recorded "
                    f"({record.size} bytes)"
                )


# Files of at least PARALLEL_MIN bytes read from a local descriptor are read and hashed
# by two threads in PARALLEL_CHUNK pieces (see Source._read_verified_parallel).
PARALLEL_MIN = 32 << 20
PARALLEL_CHUNK = 2 << 20


class _Aborted(Exception):
    """The other thread of a parallel read failed; its error is the one raised."""


class _Turn:
    """Whose turn it is to hash: chunk ``k`` may be hashed once chunks ``0..k-1`` were."""

    def __init__(self) -> None:
        self._next = 0
        self._aborted = False
        self.hashed = 0
        self._cond = threading.Condition()

    def wait(self, k: int) -> None:
        if self._next == k:
            return
        with self._cond:
            while self._next != k and not self._aborted:
                self._cond.wait()
            if self._aborted:
                raise _Aborted()

    def advance(self, k: int) -> None:
        with self._cond:
            self._next = k + 1
            self.hashed += 1
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()


def _split_io(
    pieces: list[tuple[memoryview, int]], io_one: Callable[[memoryview, int], None], digest: Any
) -> None:
    """Two threads take alternate pieces of one file: each reads its piece
    (``io_one(piece, offset)``, positional, so the two never share a file position),
    then hashes it while it is still in the cache, in file order (the hash of piece k
    waits for that of k-1), so the digest stays one stream over the whole file while
    reading and hashing share two cores. (Measured on 2 cores, 512 MiB: 100-112 ms
    against 112-130 ms for one reader feeding one hashing thread; the same split for
    writes gained nothing and is not used.) The helper thread is always finished
    before this returns or raises: nothing touches the buffers afterwards."""
    turn = _Turn()

    def work(first: int) -> None:
        try:
            for k in range(first, len(pieces), 2):
                chunk, offset = pieces[k]
                io_one(chunk, offset)
                turn.wait(k)
                digest.update(chunk)
                turn.advance(k)
        except BaseException:
            turn.abort()
            raise

    helper = _pool("split-io", min(8, os.cpu_count() or 1)).submit(work, 1)
    try:
        work(0)
    except BaseException as exc:
        helper.exception()  # waits until the helper is done with the buffers
        if not isinstance(exc, _Aborted):
            raise
    error = helper.exception()
    if error is not None:
        raise error
    if turn.hashed != len(pieces):  # never: a thread raises before it skips a piece
        raise RuntimeError(f"only {turn.hashed} of {len(pieces)} pieces were hashed")


def _preadable(f: Any) -> bool:
    """Whether ``f`` is a raw local file that positional reads can serve."""
    return isinstance(f, io.FileIO) and hasattr(os, "preadv")


def _positioned_chunks(views: list[memoryview], offset: int) -> Iterator[tuple[memoryview, int]]:
    """Pieces of PARALLEL_CHUNK bytes of ``views`` and where each goes in the file."""
    size = PARALLEL_CHUNK
    for view in views:
        for start in range(0, len(view), size):
            chunk = view[start : start + size]
            yield chunk, offset
            offset += len(chunk)


def _pread_full(fd: int, view: memoryview, offset: int) -> int:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return got


def _chunks(views: list[memoryview]) -> Iterator[memoryview]:
    for view in views:
        for start in range(0, len(view), CHUNK):
            yield view[start : start + CHUNK]


def _readinto_full(f: BinaryIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _kind(mode: int) -> str:
    import stat

    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a special file"


def _too_big_manifest(where: str, size: int) -> DeserializationError:
    return DeserializationError(
        f"{where}: {MANIFEST} is {size} bytes, over the {MAX_MANIFEST >> 20} MiB limit; "
        "not a bundle this library wrote"
    )


class FolderSource(Source):
    """A bundle folder. Locally every file is opened relative to the folder as it was
    when the manifest was read (a descriptor), never following a link, never blocking."""

    def __init__(self, fs: Any, path: str, description: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/") or "/"
        self.local = _is_local(fs)
        self.description = description
        self._dir_fd: int | None = None
        self._manifest: bytes | None = None
        self._fetched: dict[str, str] = {}
        self._fetched_dir: str | None = None

    def _missing(self) -> DeserializationError:
        return DeserializationError(
            f"no bundle at {self.description}: {MANIFEST} is missing "
            "(the bundle was never written, or its writer did not finish)"
        )

    def _open_local(self, name: str) -> BinaryIO:
        import stat

        if self._dir_fd is None:
            try:
                self._dir_fd = os.open(self.path, os.O_RDONLY | _DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                raise FileNotFoundError(name) from None
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=self._dir_fd)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: the name is a symbolic link
                raise self._mismatch(name, "is a symbolic link") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._mismatch(name, f"is {_kind(st.st_mode)}, not a regular file")
        return os.fdopen(fd, "rb", buffering=0)

    def read_manifest(self) -> bytes:
        try:
            if self.local:
                with self._open_local(MANIFEST) as f:
                    size = os.fstat(f.fileno()).st_size
                    if size > MAX_MANIFEST:
                        raise _too_big_manifest(self.description, size)
                    data = f.read(size + 1)  # never a buffer of the cap's size
            else:
                info = self.fs.info(f"{self.path}/{MANIFEST}")
                if info.get("type", "file") != "file":
                    raise self._mismatch(MANIFEST, "is not a regular file")
                size = int(info.get("size") or 0)
                if size > MAX_MANIFEST:
                    raise _too_big_manifest(self.description, size)
                data = self.fs.cat_file(f"{self.path}/{MANIFEST}")
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing() from None
        if len(data) > MAX_MANIFEST:
            raise _too_big_manifest(self.description, len(data))
        self._manifest = data
        return data

    def check(self, records: list[FileRecord]) -> None:
        import stat

        if self.local:
            if self._dir_fd is None:
                raise self._missing()
            for r in records:
                try:
                    st = os.stat(r.name, dir_fd=self._dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    raise IntegrityError(
                        f"{self.description}: part file {r.name} is missing"
                    ) from None
                self._check_one(r, stat.S_ISREG(st.st_mode), st.st_size, _kind(st.st_mode))
            return
        try:
            listing = {
                str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: e
                for e in self.fs.ls(self.path, detail=True)
            }
        except FileNotFoundError:
            raise self._missing() from None
        for r in records:
            entry = listing.get(r.name)
            if entry is None:
                raise IntegrityError(f"{self.description}: part file {r.name} is missing")
            kind = str(entry.get("type", "file"))
            size = entry.get("size")
            self._check_one(r, kind == "file", None if size is None else int(size), f"a {kind}")

    def prefetch(self, records: list[FileRecord]) -> None:
        if self.local or not records:
            return
        import tempfile

        self._fetched_dir = tempfile.mkdtemp(prefix="remote-codecs-")
        remote = [f"{self.path}/{r.name}" for r in records]
        local = [os.path.join(self._fetched_dir, r.name) for r in records]
        self.fs.get(remote, local)  # concurrent on object stores (s3fs, gcsfs ...)
        self._fetched = {r.name: path for r, path in zip(records, local)}

    def replaced(self) -> bool:
        try:
            if self.local:
                if self._dir_fd is None:
                    return os.path.isdir(self.path)
                return os.stat(self.path).st_ino != os.fstat(self._dir_fd).st_ino
            data = self.fs.cat_file(f"{self.path}/{MANIFEST}")
            return bool(data != self._manifest)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        if self._fetched_dir:
            import shutil

            shutil.rmtree(self._fetched_dir, ignore_errors=True)
            self._fetched_dir = None
            self._fetched = {}
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _open(self, name: str) -> BinaryIO:
        if self.local:
            return self._open_local(name)
        fetched = self._fetched.get(name)
        if fetched is not None:
            return open(fetched, "rb", buffering=0)
        f: BinaryIO = self.fs.open(f"{self.path}/{name}", "rb")
        return f


def _zip_errors() -> tuple[type[Exception], ...]:
    """What zipfile raises on a corrupt or forged archive: its own error, a password it
    does not have (RuntimeError), a broken compressed stream (zlib, bz2, lzma), an
    unknown method or version, a short read."""
    import zipfile
    import zlib

    errors: list[type[Exception]] = [zipfile.BadZipFile, RuntimeError, OSError, EOFError]
    errors += [ValueError, NotImplementedError, zlib.error]
    lzma = getattr(zipfile, "lzma", None)  # (zipfile imports it when Python has it)
    if lzma is not None:
        errors.append(lzma.LZMAError)
    return tuple(errors)


class ZipSource(Source):
    """A single-file bundle (a zip) in memory. One this library wrote is read by
    ``_stored_entries``; any other zip by :mod:`zipfile`, with the same checks."""

    def __init__(self, data: bytes | bytearray | memoryview, description: str = "<bytes>") -> None:
        import zipfile

        self._read_error = _zip_errors()
        self.description = description
        view = memoryview(data)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())  # a strided view: its bytes, in order
        elif view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        self._length = len(view)
        self._zip: Any = None
        self._data = view
        try:
            self._entries = _stored_entries(view)
            if self._entries is None:
                self._zip = zipfile.ZipFile(io.BytesIO(view))
        except Exception as exc:  # BadZipFile, but also NotImplementedError ("zip file
            # version 6.5" for a flipped byte of the directory), struct.error, EOFError ...
            raise DeserializationError(
                f"{description} is not a bundle (not a valid bundle zip: {exc})"
            ) from None

    def read_manifest(self) -> bytes:
        if self._entries is not None:
            entry = self._entries.get(MANIFEST)
            if entry is None:
                raise DeserializationError(f"{self.description} has no {MANIFEST}: not a bundle")
            if entry[1] > MAX_MANIFEST:
                raise _too_big_manifest(self.description, entry[1])
            try:
                return self._member(MANIFEST)
            except IntegrityError as exc:
                raise DeserializationError(
                    f"{self.description}: manifest unreadable: {exc.args[0]}"
                ) from None
        try:
            info = self._zip.getinfo(MANIFEST)
            if info.file_size > MAX_MANIFEST:
                raise _too_big_manifest(self.description, info.file_size)
            if info.file_size > 1024 * max(info.compress_size, 1):
                raise self._mismatch(MANIFEST, "expands more than 1024-fold (a zip bomb)")
            with self._zip.open(info) as f:
                data: bytes = f.read(info.file_size + 1)
        except KeyError:
            raise DeserializationError(
                f"{self.description} has no {MANIFEST}: not a bundle"
            ) from None
        except self._read_error as exc:  # (zipfile's: encrypted, a broken stream ...)
            raise DeserializationError(f"{self.description}: manifest unreadable: {exc}") from None
        if len(data) > MAX_MANIFEST:
            raise _too_big_manifest(self.description, len(data))
        return data

    def check(self, records: list[FileRecord]) -> None:
        import zipfile

        for r in records:
            if self._entries is not None:
                entry = self._entries.get(r.name)
                if entry is None:
                    raise IntegrityError(f"{self.description}: part file {r.name} is missing")
                self._check_one(r, True, entry[1], "a folder")  # (sizes checked on parse)
                continue
            try:
                info = self._zip.getinfo(r.name)
            except KeyError:
                raise IntegrityError(f"{self.description}: part file {r.name} is missing") from None
            self._check_one(r, not info.is_dir(), info.file_size, "a folder")
            # The sizes are the archive's own word: a stored entry must really hold its
            # bytes, and no entry may claim more than the archive has (checked before a
            # buffer of that size is allocated).
            stored = info.compress_type == zipfile.ZIP_STORED
            if (stored and info.compress_size != info.file_size) or (
                info.header_offset + info.compress_size > self._length
            ):
                raise self._mismatch(
                    r.name, f"claims {info.file_size} bytes that the archive does not hold"
                )
            if not stored and info.file_size > 1024 * max(info.compress_size, 1):
                raise self._mismatch(r.name, "expands more than 1024-fold (a zip bomb)")

    def close(self) -> None:
        self._data.release()  # (the caller's buffer may be resized again)

    def _member(self, name: str) -> bytes:
        """The bytes of entry ``name`` of a canonical zip, checked against its CRC-32 as
        zipfile checks them (IntegrityError)."""
        import zlib

        assert self._entries is not None
        start, size, crc = self._entries[name]
        data = bytes(self._data[start : start + size])
        if zlib.crc32(data) != crc:
            raise IntegrityError(
                f"{self.description}: {name} unreadable: Bad CRC-32 for file {name!r}"
            )
        return data

    def _open(self, name: str) -> BinaryIO:
        if self._entries is not None:
            if name not in self._entries:
                raise FileNotFoundError(name)
            return io.BytesIO(self._member(name))
        try:
            return self._zip.open(name)  # type: ignore[no-any-return]
        except KeyError:
            raise FileNotFoundError(name) from None
        except self._read_error as exc:
            raise IntegrityError(f"{self.description}: {name} unreadable: {exc}") from None


def _is_local(fs: Any) -> bool:
    if fs is None:
        return True
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def resolve(
    uri: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> tuple[Any, str]:
    """``(filesystem, path)`` for a URI; the filesystem is None for a local path.

    Local paths (and ``file://`` URIs) are handled with ``os`` directly, so the common
    case never imports fsspec; any other URI goes through ``fsspec.url_to_fs``.
    """
    text = os.fspath(uri)
    if "://" not in text or text.startswith("file://"):
        if storage_options:
            raise TypeError(f"storage_options were given for the local path {text!r}")
        path = text[len("file://") :] if text.startswith("file://") else text
        return None, os.path.abspath(os.path.expanduser(path))
    import fsspec

    fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
    return fs, path
