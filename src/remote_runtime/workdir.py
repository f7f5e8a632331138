"""The job's working directory: local files zipped by the client, unpacked by the job."""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from typing import Any

from .settings import CustomFileFilter, Settings

__all__ = [
    "by_value_unless_importable",
    "importable_in_job",
    "pack_workdir",
    "runtime_path",
    "unpack_workdir",
]

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


# -- what the job can import -------------------------------------------------------------------
#
# A job's sys.path holds its workspace (the unpacked working directory), the
# environment's site-packages and standard library, and the folder remote_runtime itself
# was imported from when that is none of those (a source checkout, a PYTHONPATH entry):
# never the caller's whole sys.path. So a module left out of the workspace fails to
# import locally exactly as it would on Ray or in the cloud.


def _environment_dirs() -> list[str]:
    return list(_environment_dirs_cached())


@functools.lru_cache(maxsize=1)
def _environment_dirs_cached() -> tuple[str, ...]:
    """(the same for the life of the process: computed once, it costs a job's worth)"""
    import site
    import sys
    import sysconfig

    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    dirs.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        dirs.add(user)
    dirs.update(v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib"))
    return tuple(sorted({os.path.realpath(d) for d in dirs if d}))


def runtime_path() -> list[str]:
    """The folders a job needs on its PYTHONPATH to import remote_runtime and
    remote_codecs: those they were imported from, unless the environment has them."""
    return list(_runtime_path_cached())


@functools.lru_cache(maxsize=1)
def _runtime_path_cached() -> tuple[str, ...]:
    import remote_codecs
    import remote_runtime

    env = _environment_dirs()
    out = []
    for package in (remote_runtime, remote_codecs):
        folder = os.path.dirname(os.path.dirname(os.path.realpath(package.__file__ or "")))
        if folder and not _under(folder, env):
            out.append(folder)
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=256)
def _realpath(path: str) -> str:
    """A module file's resolved path (asked for every job: cached, a module's file stays)."""
    return os.path.realpath(path)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def importable_in_job(module_name: str, settings: Settings) -> bool:
    """Whether the job can import ``module_name`` by name: from the environment, the
    runtime's own folder, or (with ``include_local_workdir``) the shipped workspace."""
    import sys

    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__":
        return module is None
    file = getattr(module, "__file__", None)
    if not file:
        return True  # built in, or a namespace package
    file = _realpath(file)
    if _under(file, _environment_dirs() + runtime_path()):
        return True
    if settings.include_local_workdir:
        root = os.path.realpath(os.getcwd())
        if _under(file, [root]):
            rel = os.path.relpath(file, root)
            parts = module_name.split(".")
            return rel in (os.path.join(*parts) + ".py", os.path.join(*parts, "__init__.py"))
    return False


_by_value_lock = threading.Lock()
_by_value_count: dict[str, int] = {}


@contextlib.contextmanager
def by_value_unless_importable(fn: Any, settings: Settings) -> Iterator[None]:
    """While the job's function and arguments are written: when ``fn``'s module cannot be
    imported in the job (a test module, a module outside the workspace), its functions
    and classes travel by value (as ``__main__``'s always do) instead of failing there."""
    import cloudpickle

    while True:  # the plain function behind a partial, a bound method, a wrapper
        inner = getattr(fn, "func", None) or getattr(fn, "__func__", None)
        if inner is None or inner is fn or not callable(inner):
            break
        fn = inner
    name = getattr(fn, "__module__", None)
    if not isinstance(name, str) or importable_in_job(name, settings):
        yield
        return
    with _by_value_lock:
        count = _by_value_count.get(name, 0)
        if count == 0 and name in cloudpickle.list_registry_pickle_by_value():
            ours = False  # the user registered it: leave it alone
        else:
            ours = True
            if count == 0:
                cloudpickle.register_pickle_by_value(sys_module(name))
            _by_value_count[name] = count + 1
    try:
        yield
    finally:
        if ours:
            with _by_value_lock:
                _by_value_count[name] -= 1
                if _by_value_count[name] == 0:
                    del _by_value_count[name]
                    cloudpickle.unregister_pickle_by_value(sys_module(name))


def sys_module(name: str) -> Any:
    import sys

    return sys.modules[name]
