"""The public entry points: ``@remote``."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .settings import Settings, resolve_settings

if TYPE_CHECKING:
    from .client import Job

__all__ = ["RemoteFunction", "remote"]

P = ParamSpec("P")
R = TypeVar("R")


class RemoteFunction(Generic[P, R]):
    """A function whose every call runs as a job and returns its value (or raises).

    On a method (``@remote`` inside a class body) it binds ``self`` like a function does:
    the instance travels as the first argument (a copy, as every argument is).
    """

    func: Callable[P, R]

    def __init__(self, func: Callable[P, R], settings: Settings) -> None:
        if isinstance(func, RemoteFunction):
            func = func.func
        if not callable(func):
            raise TypeError(f"@remote decorates a function, got {func!r}")
        self.func = func
        self.settings = settings
        functools.update_wrapper(self, func)

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return types.MethodType(self, obj)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result: R = run_call(self.func, args, kwargs, self.settings)
        except BaseException as exc:
            raise exc.with_traceback(None)  # the remote traceback is in the exception's notes
        return result

    def __repr__(self) -> str:
        return f"<remote function {getattr(self.func, '__qualname__', self.func)!r}>"


class _RunCoroutine:
    """An ``async def`` function as a job: the coroutine runs to completion with
    ``asyncio.run`` in the job, and its return value comes back."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        return asyncio.run(self.func(*args, **kwargs))


def job_callable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a job runs for ``fn``: an ``@remote`` function's underlying function (never
    a nested job), and ``async def`` functions run with ``asyncio.run``."""
    if isinstance(fn, RemoteFunction):
        fn = fn.func
    elif isinstance(fn, types.MethodType) and isinstance(fn.__func__, RemoteFunction):
        fn = types.MethodType(fn.__func__.func, fn.__self__)
    target = fn.__func__ if isinstance(fn, types.MethodType) else fn
    if inspect.iscoroutinefunction(target):
        if isinstance(fn, types.MethodType):
            return functools.partial(_RunCoroutine(fn.__func__), fn.__self__)
        return _RunCoroutine(fn)
    return fn


def prepare(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], settings: Settings
) -> Job:
    """Write the job's folder for ``fn(*args, **kwargs)``; return the job, not launched."""
    from .client import Job, prepare_job

    paths, key = prepare_job(job_callable(fn), args, kwargs, settings)
    return Job(paths, key, settings)


def launch(job: Job) -> None:
    """Launch ``job``; when that fails the job is marked Failed (never left Pending)."""
    from . import job as J

    try:
        job.launch()
    except BaseException as exc:
        try:
            job.paths.write_status(
                J.JobState.FAILED,
                stage="launch",
                error={
                    "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "message": f"the job could not be launched: {exc}",
                    "traceback": "",
                },
            )
        except Exception:
            pass  # the store itself may be what failed
        raise


def run_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], settings: Settings
) -> Any:
    """One call as one job: write it, launch it, wait for it, return its value or raise."""
    job = prepare(fn, args, kwargs, settings)
    launch(job)
    return job.result()


@overload
def remote(func: Callable[P, R], /) -> RemoteFunction[P, R]: ...


@overload
def remote(
    func: None = None, /, **settings: Any
) -> Callable[[Callable[P, R]], RemoteFunction[P, R]]: ...


def remote(func: Callable[P, R] | None = None, /, **settings: Any) -> Any:
    """Run each call of the decorated function as a job, and return its value.

    Use as ``@remote`` or ``@remote(s3_root_uri=..., dependencies=..., ...)``; the keyword
    settings are SageMaker's names (see :class:`remote_runtime.settings.Settings`),
    checked here. A call blocks until the job ends and returns its value, or raises the
    function's exception (its original type, with the remote traceback attached). An
    ``async def`` function runs to completion in the job (``asyncio.run``); the call
    still blocks (use ``RemoteExecutor.submit`` and ``await`` its future not to).
    """
    resolved = resolve_settings(settings, "remote()")
    if func is not None:
        return RemoteFunction(func, resolved)

    def decorate(f: Callable[P, R]) -> RemoteFunction[P, R]:
        return RemoteFunction(f, resolved)

    return decorate
