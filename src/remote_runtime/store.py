"""The job root: a local folder (plain ``os`` calls) or any fsspec URI (``s3://`` ...).

Small records (job.json, status.json) are written atomically: a temporary file renamed
into place on a local folder, one PUT on an object store.

Every wait on a remote store is bounded: an ``s3://`` root gets connect and read timeouts
and a small number of attempts unless the user's ``storage_options`` say otherwise
(:data:`S3_DEFAULTS`), and each operation of this module has an overall deadline
(``store_timeout_in_seconds``). Failures become :class:`ServiceError` naming the store,
the job and what to do (:meth:`Store.guard`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from remote_codecs.storage import resolve

__all__ = ["S3_DEFAULTS", "Store", "is_service_failure"]

# botocore settings an s3:// root gets when storage_options do not give them: a dead or
# silent endpoint fails within about a minute instead of after minutes of stacked retries.
S3_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 15,
    "retries": {"max_attempts": 3, "mode": "standard"},
}
# s3fs retries some failures itself on top of botocore's attempts (which already retry
# timeouts and refused connections): one try, so the attempts do not multiply.
S3FS_TRIES = 1
DEFAULT_TIMEOUT = 60.0

_SERVICE_MODULES = (
    "botocore",
    "aiobotocore",
    "aiohttp",
    "s3fs",
    "gcsfs",
    "adlfs",
    "urllib3",
    "requests",
    "fsspec",
)
_MISSING_BUCKET = {"NoSuchBucket"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AccessDenied",
    "AllAccessDisabled",
    "403",
}


def _error_code(exc: BaseException | None) -> str | None:
    """The S3 error code (NoSuchBucket, InvalidAccessKeyId ...) behind ``exc``, if any."""
    seen = 0
    while exc is not None and seen < 8:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = (response.get("Error") or {}).get("Code")
            if code:
                return str(code)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def is_service_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the store (or the network to it) failed, not the data."""
    from remote_codecs import CodecError

    code = _error_code(exc)
    if code in _MISSING_BUCKET or code in _BAD_CREDENTIALS:
        return True
    if isinstance(exc, CodecError) and not isinstance(exc.__cause__, (OSError, ConnectionError)):
        return bool(exc.__cause__ is not None and is_service_failure(exc.__cause__))
    if isinstance(exc, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    return type(exc).__module__.split(".")[0] in _SERVICE_MODULES


_is_service_failure = is_service_failure  # the name older callers use

_OPERATIONS = {
    "pipe_file": "writing",
    "put_file": "uploading to",
    "cat_file": "reading",
    "get_file": "downloading",
    "info": "looking up",
    "rm": "removing",
    "ls": "listing",
    "find": "listing",
}


def _with_s3_defaults(root: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(options or {})
    if not root.startswith(("s3://", "s3a://")):
        return out
    config = dict(out.get("config_kwargs") or {})
    for name, value in S3_DEFAULTS.items():
        config.setdefault(name, value)
    out["config_kwargs"] = config
    return out


class Store:
    """A root URI under which every job has its folder."""

    _checked: set[str] = set()
    _checked_lock = threading.Lock()

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        options = _with_s3_defaults(root, storage_options)
        self.fs, self.root = resolve(root, options or None)
        self.uri = root if "://" in root and not root.startswith("file://") else self.root
        self.storage_options = options
        self.local = self.fs is None
        self.timeout = float(timeout) if timeout else DEFAULT_TIMEOUT
        self.down = False  # set once an operation failed for want of the store
        if self.local:
            os.makedirs(self.root, exist_ok=True)
        elif root.startswith(("s3://", "s3a://")) and getattr(self.fs, "retries", 0) > S3FS_TRIES:
            self.fs.retries = S3FS_TRIES

    def path(self, *parts: str) -> str:
        return "/".join((self.root.rstrip("/"), *parts))

    def uri_of(self, *parts: str) -> str:
        """A URI for ``parts`` that remote_codecs and other processes understand."""
        if self.local:
            return self.path(*parts)
        protocol = (
            self.fs.protocol[0] if isinstance(self.fs.protocol, (tuple, list)) else self.fs.protocol
        )
        return f"{protocol}://{self.path(*parts)}"

    @property
    def bucket(self) -> str:
        """The bucket (first path component) of a remote root; "" for a local folder."""
        return "" if self.local else self.root.strip("/").split("/", 1)[0]

    @property
    def endpoint(self) -> str:
        """Where the store is: its endpoint URL when one is configured, else its URI."""
        if self.local:
            return self.root
        endpoint = getattr(self.fs, "endpoint_url", None) or (
            self.storage_options.get("client_kwargs") or {}
        ).get("endpoint_url")
        return str(endpoint or os.environ.get("AWS_ENDPOINT_URL") or self.uri)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``fs.<name>(*args)`` with an overall deadline (async filesystems such as s3fs);
        a failure of the store itself becomes a ServiceError naming the store and the job."""
        path = str(args[0]) if args else self.root
        with self.guard(_OPERATIONS.get(name, name) + " " + path, job=self._job_of(path)):
            coroutine = getattr(self.fs, f"_{name}", None)
            loop = getattr(self.fs, "loop", None) if coroutine is not None else None
            if loop is None or getattr(self.fs, "asynchronous", False):
                return getattr(self.fs, name)(*args, **kwargs)
            from fsspec.asyn import sync

            result = sync(loop, coroutine, *args, timeout=self.timeout, **kwargs)
            self.down = False
            return result

    def _job_of(self, path: str) -> str | None:
        """The job whose folder holds ``path`` (its first component under the root)."""
        root = self.root.rstrip("/") + "/"
        if not path.startswith(root):
            return None
        name = path[len(root) :].split("/", 1)[0]
        return name or None

    def check(self) -> None:
        """Fail now, with a ServiceError that says why, if the root's bucket cannot be
        used (missing, refused credentials, no answer); checked once per process."""
        if self.local:
            return
        token = f"{self.uri}|{json.dumps(self.storage_options, sort_keys=True, default=str)}"
        if token in Store._checked:
            return
        from .errors import ServiceError

        try:
            with self.guard("checking the job root"):
                try:
                    self._call("info", self.bucket)
                except FileNotFoundError as exc:
                    raise _MissingBucket(self.bucket) from exc
        except ServiceError as exc:
            if _error_code(exc) == "403":
                return  # no bucket-level permission (a prefix-scoped policy): objects decide
            raise
        with Store._checked_lock:
            Store._checked.add(token)

    # -- bytes and JSON ------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file atomically."""
        if self.local:
            publish_local(path, data)
        else:
            self._call("pipe_file", path, data, **self._put_options())

    def read_bytes(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as f:
                return f.read()
        data: bytes = self._call("cat_file", path)
        return data

    def write_json(self, path: str, obj: Any) -> None:
        # One line, no indent: json's C encoder is used only without ``indent``, and the
        # pure-Python one cost a warm job ~0.3 ms for job.json and status.json.
        self.write_bytes(path, json.dumps(obj, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def exists(self, path: str) -> bool:
        if self.local:
            return os.path.exists(path)
        try:
            self._call("info", path)
            return True
        except FileNotFoundError as exc:
            if _error_code(exc) in _MISSING_BUCKET:
                raise
            return False

    def put_file(self, local_path: str, path: str) -> None:
        if self.local:
            import shutil

            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.abspath(local_path) != os.path.abspath(path):
                shutil.copyfile(local_path, path)
        else:
            self._call("put_file", local_path, path, **self._put_options())

    def get_file(self, path: str, local_path: str) -> None:
        if self.local:
            import shutil

            shutil.copyfile(path, local_path)
        else:
            self._call("get_file", path, local_path)

    def size(self, path: str) -> int:
        if self.local:
            return os.path.getsize(path)
        return int(self._call("info", path)["size"])

    def read_range(self, path: str, start: int, end: int | None = None) -> bytes:
        """Bytes of ``path`` from ``start`` to ``end`` (its end when None; b"" if it does
        not exist)."""
        try:
            if self.local:
                with open(path, "rb") as f:
                    f.seek(start)
                    return f.read() if end is None else f.read(max(0, end - start))
            data: bytes = self._call("cat_file", path, start=start, end=end)
            return data
        except FileNotFoundError:
            return b""

    def remove(self, path: str) -> None:
        """Remove a file or a whole folder; missing is fine."""
        if self.local:
            import shutil

            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
        else:
            try:
                self._call("rm", path, recursive=True)
            except FileNotFoundError:
                pass

    def list_names(self) -> Iterator[str]:
        """Names of the entries directly under the root."""
        yield from (name for name, _ in self.list_entries(self.root))

    def list_entries(self, path: str) -> list[tuple[str, bool]]:
        """``(name, is_folder)`` of the entries directly under ``path`` (sorted)."""
        if self.local:
            try:
                return sorted((e.name, e.is_dir(follow_symlinks=False)) for e in os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            entries = self._call("ls", path, detail=True, refresh=True)
        except FileNotFoundError as exc:
            if _error_code(exc) in _MISSING_BUCKET:
                raise
            return []
        return sorted(
            (str(e["name"]).rstrip("/").rsplit("/", 1)[-1], e.get("type") == "directory")
            for e in entries
        )

    def modified(self, path: str) -> float | None:
        try:
            if self.local:
                return os.path.getmtime(path)
            info = self._call("info", path)
        except FileNotFoundError:
            return None
        stamp = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
        if stamp is None:
            return None
        return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)

    def newest_modified(self, path: str) -> float | None:
        """The newest modification time of the files under folder ``path`` (None if none)."""
        newest: float | None = None
        if self.local:
            for folder, _, files in os.walk(path):
                for name in files:
                    try:
                        stamp = os.path.getmtime(os.path.join(folder, name))
                    except OSError:
                        continue
                    newest = stamp if newest is None else max(newest, stamp)
            return newest
        try:
            found = self._call("find", path, detail=True)
        except FileNotFoundError:
            return None
        for info in found.values():
            stamp = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
            if stamp is None:
                continue
            value = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
            newest = value if newest is None else max(newest, value)
        return newest

    def _put_options(self) -> dict[str, Any]:
        return {}  # SSE-KMS and the like come with the filesystem's own options

    # -- failures ----------------------------------------------------------------------

    def describe_failure(self, exc: BaseException, what: str = "", job: str | None = None) -> str:
        """A message for a failure of this store: the store, the job, why, what to do."""
        code = _error_code(exc)
        where = f"the job store {self.uri} (at {self.endpoint})"
        during = f" while {what}" if what else ""
        subject = f"job {job}: " if job else ""
        if isinstance(exc, _MissingBucket) or code in _MISSING_BUCKET:
            return (
                f"{subject}the bucket {self.bucket!r} of {where} does not exist{during}. "
                "Create it, or point s3_root_uri at an existing bucket."
            )
        if code in _BAD_CREDENTIALS or isinstance(exc, PermissionError):
            return (
                f"{subject}{where} refused the credentials{during} ({code or type(exc).__name__}: "
                f"{exc}). Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) and "
                f"that they may read and write {self.bucket!r}."
            )
        if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
            problem = f"did not answer in time{during} (each operation is bounded by store_timeout_in_seconds={self.timeout:g} s and the storage_options' connect/read timeouts)"
        else:
            problem = f"could not be reached{during}"
        return (
            f"{subject}{where} {problem}: {type(exc).__name__}: {exc}. Check the endpoint "
            "(AWS_ENDPOINT_URL), the network and the credentials (AWS_ACCESS_KEY_ID ...)."
        )

    @contextlib.contextmanager
    def guard(
        self, what: str = "", *, job: str | None = None, then: str | None = None
    ) -> Iterator[None]:
        """Turn the failures of a remote store (unreachable, refusing, missing bucket)
        into ServiceError naming the store, the job and what to do (``then``)."""
        from .errors import ServiceError

        try:
            yield
        except ServiceError as exc:
            if then and then not in str(exc) and self.uri in str(exc):  # ours, not Ray's
                raise ServiceError(f"{exc} {then}") from exc.__cause__
            raise
        except Exception as exc:
            if self.local or not is_service_failure(exc):
                raise
            self.down = True
            message = self.describe_failure(exc, what, job)
            if then:
                message += " " + then
            raise ServiceError(message) from exc


class _MissingBucket(FileNotFoundError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"no bucket named {bucket!r}")
        self.response = {"Error": {"Code": "NoSuchBucket"}}


def publish_local(path: str, data: bytes, direct: bool = False) -> None:
    """Write ``data`` at local ``path`` in one step: a new file beside it (never opened
    through a link), renamed into place; a reader sees no file or the whole file. With
    ``direct``, a new file at ``path`` itself (O_EXCL: never an existing one), for files
    nothing reads before a later commit point."""
    tmp = (
        path
        if direct
        else f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp-{os.urandom(6).hex()}"
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the folder is made by its first file (a syscall saved)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        if not direct:
            os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
