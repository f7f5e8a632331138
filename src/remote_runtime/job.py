"""What a job is on disk: its name, its folder layout, its spec and its status records."""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .store import Store

__all__ = ["JobPaths", "JobState", "make_job_name"]

NAME_RE = re.compile(r"^[a-zA-Z0-9](-?[a-zA-Z0-9])*$")
MAX_NAME = 63


class JobState:
    """The states a job goes through (SageMaker's names)."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    TERMINAL = frozenset({COMPLETED, FAILED, STOPPED})


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
    return os.uname().nodename if hasattr(os, "uname") else platform.node()


MAX_PREFIX = 39  # SageMaker's: a 63-character name leaves 39 for the prefix


def name_prefix(prefix: str | None, fallback: str = "job") -> str:
    """The prefix as job names carry it: [a-zA-Z0-9-] only, at most 39 characters."""
    clean = re.sub(r"[^a-zA-Z0-9]+", "-", prefix or fallback).strip("-") or "job"
    return clean[:MAX_PREFIX].rstrip("-") or "job"


def make_job_name(prefix: str | None, fallback: str = "job") -> str:
    """``<prefix>-<YYYYMMDD>-<HHMMSSmmm>-<random>`` (UTC): at most 63 characters of
    [a-zA-Z0-9-], the prefix kept up to 39 characters as SageMaker keeps it."""
    import datetime
    import secrets

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S%f")[:-3]
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    suffix = "".join(secrets.choice(alphabet) for _ in range(4))
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

    def bundle(self, which: str) -> str:
        """The URI of a bundle folder: function, arguments, results or exception."""
        assert which in ("function", "arguments", "results", "exception")
        return self.store.uri_of(self.name, which)

    def has_bundle(self, which: str) -> bool:
        return self.store.exists(self._p(which, "manifest.json"))

    # -- records --------------------------------------------------------------------

    def read_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.store.read_json(self.spec)
        return spec

    def read_status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = self.store.read_json(self.status)
            return status
        except FileNotFoundError:
            return {"state": JobState.PENDING}
        except ValueError:  # being replaced right now on a store without atomic rename
            time.sleep(0.05)
            status = self.store.read_json(self.status)
            return status

    def write_status(self, state: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json and set ``state`` (with a timestamp)."""
        current = self.read_status() if self.store.exists(self.status) else {}
        now = time.time()
        current.update(fields)
        current["state"] = state
        current["updated"] = now
        if state == JobState.IN_PROGRESS:
            current.setdefault("started", now)
        if state in JobState.TERMINAL:
            current.setdefault("ended", now)
        self.store.write_json(self.status, current)
        return current


def job_spec(
    name: str, function_qualname: str, settings: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """The contents of job.json: never a secret."""
    return {
        "name": name,
        "function": function_qualname,
        "settings": dict(settings),
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
