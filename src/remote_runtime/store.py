"""The job root: a local folder (plain ``os`` calls) or any fsspec URI (``s3://`` ...).

Small records (job.json, status.json) are written atomically: a temporary file renamed
into place on a local folder, one PUT on an object store.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from remote_codecs.storage import resolve

__all__ = ["Store"]


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


def _is_service_failure(exc: BaseException) -> bool:
    from remote_codecs import CodecError

    if isinstance(exc, CodecError) and not isinstance(exc.__cause__, (OSError, ConnectionError)):
        return bool(exc.__cause__ is not None and _is_service_failure(exc.__cause__))
    if isinstance(exc, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    return type(exc).__module__.split(".")[0] in _SERVICE_MODULES


class Store:
    """A root URI under which every job has its folder."""

    def __init__(self, root: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.fs, self.root = resolve(root, dict(storage_options) if storage_options else None)
        self.uri = root if "://" in root and not root.startswith("file://") else self.root
        self.storage_options = dict(storage_options or {})
        self.local = self.fs is None
        if self.local:
            os.makedirs(self.root, exist_ok=True)

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

    # -- bytes and JSON ------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file atomically."""
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data, **self._put_options())

    def read_bytes(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as f:
                return f.read()
        data: bytes = self.fs.cat_file(path)
        return data

    def write_json(self, path: str, obj: Any) -> None:
        self.write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(path) if self.local else bool(self.fs.exists(path))

    def put_file(self, local_path: str, path: str) -> None:
        if self.local:
            import shutil

            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.abspath(local_path) != os.path.abspath(path):
                shutil.copyfile(local_path, path)
        else:
            self.fs.put_file(local_path, path, **self._put_options())

    def get_file(self, path: str, local_path: str) -> None:
        if self.local:
            import shutil

            shutil.copyfile(path, local_path)
        else:
            self.fs.get_file(path, local_path)

    def size(self, path: str) -> int:
        return os.path.getsize(path) if self.local else int(self.fs.size(path))

    def read_range(self, path: str, start: int) -> bytes:
        """Bytes of ``path`` from ``start`` to its end (b"" if it does not exist)."""
        try:
            if self.local:
                with open(path, "rb") as f:
                    f.seek(start)
                    return f.read()
            data: bytes = self.fs.cat_file(path, start=start)
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
                self.fs.rm(path, recursive=True)
            except FileNotFoundError:
                pass

    def list_names(self) -> Iterator[str]:
        """Names of the entries directly under the root."""
        if self.local:
            try:
                yield from sorted(os.listdir(self.root))
            except FileNotFoundError:
                return
        else:
            try:
                entries = self.fs.ls(self.root, detail=False, refresh=True)
            except FileNotFoundError:
                return
            for entry in sorted(entries):
                yield entry.rstrip("/").rsplit("/", 1)[-1]

    def modified(self, path: str) -> float | None:
        try:
            if self.local:
                return os.path.getmtime(path)
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        stamp = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
        if stamp is None:
            return None
        return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)

    def _put_options(self) -> dict[str, Any]:
        return {}  # SSE-KMS and the like come with the filesystem's own options

    @contextlib.contextmanager
    def guard(self, what: str = "") -> Iterator[None]:
        """Turn the failures of a remote store (unreachable, refusing) into ServiceError."""
        try:
            yield
        except Exception as exc:
            if self.local or not _is_service_failure(exc):
                raise
            from .errors import ServiceError

            raise ServiceError(
                f"the job store {self.uri} could not be reached{' while ' + what if what else ''}: "
                f"{type(exc).__name__}: {exc}. Check the endpoint and credentials (AWS_ENDPOINT_URL, "
                "AWS_ACCESS_KEY_ID ...), then try again: nothing half-written is visible."
            ) from exc
