"""remote_runtime: run a Python function somewhere else and get back its value or exception.

    from remote_runtime import remote

    @remote
    def divide(x, y):
        return x / y

    divide(10, 5)   # 2.0, computed in a job of its own
    divide(10, 0)   # raises ZeroDivisionError, with the remote traceback

Importing this package is cheap: each name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import RemoteFunction, remote
    from .errors import (
        DeserializationError,
        IntegrityError,
        JobFailedError,
        JobTimeoutError,
        RemoteFunctionError,
        RemoteRuntimeError,
        RuntimeEnvironmentError,
        SerializationError,
        ServiceError,
    )
    from .executor import RemoteExecutor
    from .futures import Future, get_future, list_futures
    from .progress import progress
    from .settings import CustomFileFilter, Settings, resolve_settings

__version__ = "0.1.0"

_EXPORTS = {
    "remote": ".api",
    "RemoteExecutor": ".executor",
    "Future": ".futures",
    "get_future": ".futures",
    "list_futures": ".futures",
    "progress": ".progress",
    "RemoteFunction": ".api",
    "CustomFileFilter": ".settings",
    "Settings": ".settings",
    "resolve_settings": ".settings",
    "DeserializationError": ".errors",
    "IntegrityError": ".errors",
    "JobFailedError": ".errors",
    "JobTimeoutError": ".errors",
    "RemoteFunctionError": ".errors",
    "RemoteRuntimeError": ".errors",
    "RuntimeEnvironmentError": ".errors",
    "SerializationError": ".errors",
    "ServiceError": ".errors",
}

__all__ = [
    "CustomFileFilter",
    "DeserializationError",
    "Future",
    "IntegrityError",
    "JobFailedError",
    "JobTimeoutError",
    "RemoteExecutor",
    "RemoteFunction",
    "RemoteFunctionError",
    "RemoteRuntimeError",
    "RuntimeEnvironmentError",
    "SerializationError",
    "ServiceError",
    "Settings",
    "get_future",
    "list_futures",
    "progress",
    "remote",
    "resolve_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'remote_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
