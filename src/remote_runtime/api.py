"""The public entry points: ``@remote``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .settings import Settings, resolve_settings

__all__ = ["RemoteFunction", "remote"]

P = ParamSpec("P")
R = TypeVar("R")


class RemoteFunction(Generic[P, R]):
    """A function whose every call runs as a job and returns its value (or raises)."""

    def __init__(self, func: Callable[P, R], settings: Settings) -> None:
        if not callable(func):
            raise TypeError(f"@remote decorates a function, got {func!r}")
        self.func = func
        self.settings = settings
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        from .client import submit_job

        job = submit_job(self.func, args, kwargs, self.settings)
        result: R = job.result()
        return result

    def __repr__(self) -> str:
        return f"<remote function {getattr(self.func, '__qualname__', self.func)!r}>"


@overload
def remote(func: Callable[P, R], /) -> RemoteFunction[P, R]: ...


@overload
def remote(
    func: None = None, /, **settings: Any
) -> Callable[[Callable[P, R]], RemoteFunction[P, R]]: ...


def remote(func: Callable[P, R] | None = None, /, **settings: Any) -> Any:
    """Run each call of the decorated function as a job, and return its value.

    Use as ``@remote`` or ``@remote(s3_root_uri=..., dependencies=..., ...)``; the keyword
    settings are SageMaker's names (see :class:`remote_runtime.settings.Settings`). A call
    blocks until the job ends and returns its value, or raises the function's exception
    (its original type, with the remote traceback attached).
    """
    resolved = resolve_settings(settings, "remote()")
    if func is not None:
        return RemoteFunction(func, resolved)

    def decorate(f: Callable[P, R]) -> RemoteFunction[P, R]:
        return RemoteFunction(f, resolved)

    return decorate
