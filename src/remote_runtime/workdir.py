"""The job's working directory: local files zipped by the client, unpacked by the job."""

from __future__ import annotations

import fnmatch
import io
import os
import zipfile
from collections.abc import Iterator

from .settings import CustomFileFilter, Settings

__all__ = ["pack_workdir", "unpack_workdir"]

ALWAYS_IGNORED = (
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    ".remote-runtime",
    "*.pyc",
    ".mypy_cache",
    ".pytest_cache",
)


def _walk(root: str, settings: Settings) -> Iterator[str]:
    """Relative paths of the files to upload, in a stable order."""
    flt = settings.custom_file_filter
    requirements = (
        os.path.abspath(settings.dependencies)
        if settings.dependencies not in (None, "auto_capture")
        else None
    )
    for folder, dirs, files in os.walk(root):
        names = sorted(dirs) + sorted(files)
        ignored = {n for n in names if any(fnmatch.fnmatch(n, p) for p in ALWAYS_IGNORED)}
        if isinstance(flt, CustomFileFilter):
            ignored |= {
                n for n in names if any(fnmatch.fnmatch(n, p) for p in flt.ignore_name_patterns)
            }
        elif flt is not None:
            ignored |= set(flt(folder, names))
        dirs[:] = sorted(d for d in dirs if d not in ignored)
        for name in sorted(files):
            if name in ignored:
                continue
            path = os.path.join(folder, name)
            if flt is None and not (name.endswith(".py") or os.path.abspath(path) == requirements):
                continue
            if os.path.islink(path) and not os.path.exists(path):
                continue
            yield os.path.relpath(path, root)


def pack_workdir(settings: Settings, root: str | None = None) -> bytes:
    """The workspace zip: by default the ``*.py`` files (and the requirements file) under
    the current directory, keeping their layout; with ``custom_file_filter``, every file
    the filter keeps."""
    root = os.path.abspath(root or os.getcwd())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for rel in _walk(root, settings):
            zf.write(os.path.join(root, rel), rel.replace(os.sep, "/"))
    return buf.getvalue()


def unpack_workdir(data: bytes, target: str) -> None:
    """Unpack a workspace zip into ``target``, refusing paths that escape it."""
    target = os.path.abspath(target)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            dest = os.path.abspath(os.path.join(target, info.filename))
            if not dest.startswith(target + os.sep):
                raise ValueError(f"workspace entry {info.filename!r} escapes the working directory")
        zf.extractall(target)
