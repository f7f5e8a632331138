"""Where bundle files go: a folder on any fsspec URI, or one in-memory zip.

Every file is hashed (BLAKE3; sha256 is also read) while it is written and verified while it is read. Large
buffers are written and hashed in 16 MiB chunks, the hash of one chunk running in a
helper thread while the next is written (hashlib and file I/O both release the GIL).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
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
_BUNDLE_FILE = re.compile(r"^(\d+[.\w-]*|skeleton\.pkl|\.manifest\.json\.tmp-\w+)$")

# Files are hashed with BLAKE3 (a cryptographic hash, ~3x faster than sha256 on this
# class of machine, which keeps hashing off the critical path); sha256 is still read.
HASH = "blake3"


def new_hasher(alg: str = HASH) -> Any:
    """A hashlib-style hasher for ``alg`` ("blake3" or "sha256")."""
    if alg == "sha256":
        return hashlib.sha256()
    if alg == "blake3":
        import blake3

        return blake3.blake3()  # one thread: hashing overlaps the I/O of the next chunk
    raise DeserializationError(f"unknown hash algorithm {alg!r}; upgrade remote-runtime")


def digest_of(hasher: Any, alg: str = HASH) -> str:
    return f"{alg}:{hasher.hexdigest()}"


_pools: dict[str, ThreadPoolExecutor] = {}
_pool_lock = threading.Lock()


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
    """A write-only file that hashes what passes through it."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._raw = raw
        self.name = name  # type: ignore[misc]
        self._hash = new_hasher()
        self.size = 0
        self.record: FileRecord | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = as_bytes_view(data)
        n = len(view)
        if n <= _SMALL:
            self._hash.update(view)
            self._raw.write(view)
        else:
            pending: Future[None] | None = None
            for start in range(0, n, CHUNK):
                chunk = view[start : start + CHUNK]
                if pending is not None:
                    pending.result()
                pending = _hash_pool().submit(self._hash.update, chunk)
                self._raw.write(chunk)
            if pending is not None:
                pending.result()
        self.size += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
            self.record = FileRecord(self.name, self.size, digest_of(self._hash))
        super().close()


# -- sinks ------------------------------------------------------------------------------


class Sink:
    """Receives a bundle's files, then its manifest (the commit)."""

    def open(self, name: str) -> HashingWriter:
        raise NotImplementedError

    def commit(self, manifest: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Called when encoding failed; the manifest was never written."""


class FolderSink(Sink):
    """A bundle as a folder on any fsspec filesystem; the manifest is written last, atomically."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.local = _is_local(fs)
        self._written: list[str] = []
        self._uploads: list[_Spool] = []
        self._prepare()

    def _join(self, name: str) -> str:
        return f"{self.path}/{name}"

    def _prepare(self) -> None:
        fs, path = self.fs, self.path
        if self.local:
            if os.path.isdir(path):
                names = os.listdir(path)
                self._check_replaceable(names)
                if MANIFEST in names:
                    os.remove(self._join(MANIFEST))  # the old bundle stops existing first
                for name in names:
                    if name != MANIFEST:
                        os.remove(self._join(name))
            elif os.path.exists(path):
                raise FileExistsError(
                    f"{path} exists and is not a folder: cannot save a bundle there"
                )
            os.makedirs(path, exist_ok=True)
            return
        try:
            names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        except FileNotFoundError:
            names = []
        if names:
            self._check_replaceable(names)
            if MANIFEST in names:
                fs.rm_file(self._join(MANIFEST))
            others = [self._join(n) for n in names if n != MANIFEST]
            if others:
                fs.rm(others)

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
            return HashingWriter(open(path, "wb"), name)
        spool = _Spool(self.fs, path)
        self._uploads.append(spool)
        return HashingWriter(spool, name)  # type: ignore[arg-type]

    def _wait_uploads(self) -> None:
        for spool in self._uploads:
            spool.wait()

    def abort(self) -> None:
        for spool in self._uploads:
            try:
                spool.wait()
            except Exception:
                pass
        for path in self._written:
            try:
                if self.local:
                    os.remove(path)
                else:
                    self.fs.rm_file(path)
            except OSError:
                pass

    def commit(self, manifest: bytes) -> None:
        final = self._join(MANIFEST)
        self._wait_uploads()  # every part is stored before the manifest makes them a bundle
        if self.local:
            tmp = self._join(f".manifest.json.tmp-{uuid.uuid4().hex[:12]}")
            with open(tmp, "wb") as f:
                f.write(manifest)
            os.replace(tmp, final)
        else:
            self.fs.pipe_file(final, manifest)  # one PUT: atomic on object stores


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
    """A bundle as one zip (stored, not compressed) held in memory."""

    def __init__(self) -> None:
        import zipfile

        self.buffer = io.BytesIO()
        self._zip = zipfile.ZipFile(self.buffer, "w", zipfile.ZIP_STORED)
        self._current: HashingWriter | None = None

    def open(self, name: str) -> HashingWriter:
        return HashingWriter(self._zip.open(name, "w", force_zip64=True), name)  # type: ignore[arg-type]

    def commit(self, manifest: bytes) -> None:
        self._zip.writestr(MANIFEST, manifest)
        self._zip.close()

    def abort(self) -> None:
        try:
            self._zip.close()
        except Exception:
            pass

    def getvalue(self) -> bytes:
        return self.buffer.getvalue()


# -- sources ----------------------------------------------------------------------------


class Source:
    """Reads a bundle's manifest and files, verifying each file against its record."""

    description: str
    _read_error: type[Exception] = OSError  # what the underlying reader raises on corruption

    def read_manifest(self) -> bytes:
        raise NotImplementedError

    def prefetch(self, records: list[FileRecord]) -> None:
        """Fetch these files ahead, concurrently (a no-op where reads are local)."""

    def close(self) -> None:
        """Release what ``prefetch`` kept."""

    def _open(self, name: str) -> BinaryIO:
        raise NotImplementedError

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
        try:
            self._read_verified(f, record, views, digest)
        except (EOFError, OSError, self._read_error) as exc:
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


class FolderSource(Source):
    def __init__(self, fs: Any, path: str, description: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.local = _is_local(fs)
        self.description = description

    def read_manifest(self) -> bytes:
        try:
            if self.local:
                with open(f"{self.path}/{MANIFEST}", "rb") as f:
                    return f.read()
            data: bytes = self.fs.cat_file(f"{self.path}/{MANIFEST}")
            return data
        except (FileNotFoundError, NotADirectoryError):
            raise DeserializationError(
                f"no bundle at {self.description}: {MANIFEST} is missing "
                "(the bundle was never written, or its writer did not finish)"
            ) from None

    def prefetch(self, records: list[FileRecord]) -> None:
        if self.local or not records:
            return
        import tempfile

        self._fetched_dir: str | None = tempfile.mkdtemp(prefix="remote-codecs-")
        remote = [f"{self.path}/{r.name}" for r in records]
        local = [os.path.join(self._fetched_dir, r.name) for r in records]  # type: ignore[arg-type]
        self.fs.get(remote, local)  # concurrent on object stores (s3fs, gcsfs ...)
        self._fetched = {r.name: path for r, path in zip(records, local)}

    def close(self) -> None:
        folder = getattr(self, "_fetched_dir", None)
        if folder:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            self._fetched_dir = None
            self._fetched = {}

    def _open(self, name: str) -> BinaryIO:
        path = f"{self.path}/{name}"
        if self.local:
            return open(path, "rb", buffering=0)
        fetched = getattr(self, "_fetched", {}).get(name)
        if fetched is not None:
            return open(fetched, "rb", buffering=0)
        f: BinaryIO = self.fs.open(path, "rb")
        return f


class ZipSource(Source):
    def __init__(self, data: bytes | bytearray | memoryview, description: str = "<bytes>") -> None:
        import zipfile

        self._read_error = zipfile.BadZipFile
        self.description = description
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DeserializationError(
                f"{description} is not a bundle (not a valid bundle zip: {exc})"
            ) from None

    def read_manifest(self) -> bytes:
        try:
            return self._zip.read(MANIFEST)
        except KeyError:
            raise DeserializationError(
                f"{self.description} has no {MANIFEST}: not a bundle"
            ) from None
        except (self._read_error, OSError, EOFError) as exc:
            raise DeserializationError(f"{self.description}: manifest unreadable: {exc}") from None

    def _open(self, name: str) -> BinaryIO:
        try:
            return self._zip.open(name)  # type: ignore[return-value]
        except KeyError:
            raise FileNotFoundError(name) from None
        except (self._read_error, OSError) as exc:
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
