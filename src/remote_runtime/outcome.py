"""A job's outcome across the boundary: the exception record written by the job, and
the exception rebuilt by the client (original type, message, cause, context, remote
traceback), or a RemoteFunctionError when the original type cannot be rebuilt here."""

from __future__ import annotations

import sys
from typing import Any

from .errors import RemoteFunctionError

__all__ = ["exception_record", "rebuild_exception"]


def _qualname(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def exception_record(
    exc: BaseException, _seen: set[int] | None = None, _top: bool = True
) -> dict[str, Any]:
    """A JSON-able record of ``exc`` and its chain; each exception is also pickled if it can be."""
    import traceback

    import cloudpickle

    seen = _seen if _seen is not None else set()
    seen.add(id(exc))
    try:
        pickled: bytes | None = cloudpickle.dumps(exc)
    except Exception:
        pickled = None
    record: dict[str, Any] = {
        "type": _qualname(type(exc)),
        "message": _safe_str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if _top
        else "",
        "pickled": pickled,
        "suppress_context": bool(exc.__suppress_context__),
    }
    for link in ("cause", "context"):
        other = getattr(exc, f"__{link}__")
        if other is not None and id(other) not in seen:
            record[link] = exception_record(other, seen, _top=False)
    return record


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def rebuild_exception(record: dict[str, Any], job_name: str) -> BaseException:
    """The exception described by ``record``, with its chain and the remote traceback."""
    exc = _rebuild_one(record, job_name)
    tb = record.get("traceback") or ""
    if tb:
        try:
            exc.remote_traceback = tb  # type: ignore[attr-defined]
        except Exception:
            pass
        note = f"\nRemote traceback (job {job_name}):\n{tb.rstrip()}"
        if sys.version_info >= (3, 11):
            exc.add_note(note)
        elif exc.__cause__ is None:
            exc.__cause__ = _RemoteTraceback(note)
    return exc


class _RemoteTraceback(Exception):
    def __str__(self) -> str:
        return str(self.args[0])


def _rebuild_one(record: dict[str, Any], job_name: str) -> BaseException:
    exc: BaseException | None = None
    if record.get("pickled") is not None:
        import pickle

        try:
            obj = pickle.loads(record["pickled"])
            if isinstance(obj, BaseException):
                exc = obj
        except Exception:
            exc = None
    if exc is None:
        exc = RemoteFunctionError(
            record["type"], record.get("message", ""), record.get("traceback", ""), job_name
        )
    for link in ("cause", "context"):
        if record.get(link):
            try:
                setattr(exc, f"__{link}__", _rebuild_one(record[link], job_name))
            except Exception:
                pass
    exc.__suppress_context__ = bool(record.get("suppress_context"))
    return exc
