"""A job's outcome across the boundary: the exception record written by the job, and
the exception rebuilt by the client (original type, ``args``, attributes, cause,
context, remote traceback), or a RemoteFunctionError saying why it could not be.

Exceptions are rebuilt the way ``copy`` would, not the way pickle does: the class is
found by name, the instance is created without calling ``__init__`` (which may take other
arguments than ``args``), then ``args`` and ``__dict__`` are restored. The remote
traceback is rendered here, where the source of the caller's functions is: cloudpickle
strips the file name of functions that travel by value, so each frame also records its
module and qualified name, and the file and source line are found again on this side.
"""

from __future__ import annotations

import sys
from typing import Any

from .errors import JobFailedError, RemoteFunctionError

__all__ = ["exception_record", "rebuild_exception", "render_traceback"]

_DYNAMIC = "<dynamic-code>"  # cloudpickle's file name for code that travelled by value


def _qualname(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def exception_record(
    exc: BaseException, _seen: set[int] | None = None, _top: bool = True
) -> dict[str, Any]:
    """A JSON-able record of ``exc`` and its chain (run in the job)."""
    import traceback

    seen = _seen if _seen is not None else set()
    seen.add(id(exc))
    state, state_error = _state(exc)
    try:
        pickled: bytes | None = _dumps(exc)
    except Exception:
        pickled = None
    record: dict[str, Any] = {
        "type": _qualname(type(exc)),
        "type_module": type(exc).__module__,
        "type_qualname": type(exc).__qualname__,
        "message": _safe_str(exc),
        "exception_only": "".join(_format_only(exc)),
        "frames": _frames(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if _top
        else "",
        "state": state,
        "state_error": state_error,
        "pickled": pickled,
        "suppress_context": bool(exc.__suppress_context__),
    }
    for link in ("cause", "context"):
        other = getattr(exc, f"__{link}__")
        if other is not None and id(other) not in seen:
            record[link] = exception_record(other, seen, _top=False)
    return record


def _dumps(obj: Any) -> bytes:
    import cloudpickle

    data: bytes = cloudpickle.dumps(obj)
    return data


def _state(exc: BaseException) -> tuple[bytes | None, str]:
    """(args, attributes) pickled; attributes that cannot travel are left out, named."""
    attrs = dict(getattr(exc, "__dict__", {}))
    try:
        return _dumps((exc.args, attrs)), ""
    except Exception:
        pass
    kept, dropped = {}, []
    for name, value in attrs.items():
        try:
            _dumps(value)
            kept[name] = value
        except Exception:
            dropped.append(name)
    try:
        args: tuple[Any, ...] = exc.args
        _dumps(args)
    except Exception:
        args = tuple(_safe_repr(a) for a in exc.args)
        dropped.append("args (sent as their repr)")
    try:
        return _dumps((args, kept)), f"could not send {', '.join(dropped)}"
    except Exception as err:
        return None, f"could not send its args or attributes: {type(err).__name__}: {err}"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _format_only(exc: BaseException) -> list[str]:
    import traceback

    try:
        return traceback.format_exception_only(type(exc), exc)
    except Exception:
        return [f"{type(exc).__name__}: {_safe_str(exc)}\n"]


def _frames(exc: BaseException) -> list[dict[str, Any]]:
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        frames.append(
            {
                "filename": code.co_filename,
                "lineno": tb.tb_lineno,
                "name": code.co_name,
                "qualname": getattr(code, "co_qualname", code.co_name),
                "module": frame.f_globals.get("__name__"),
                "line": _source_line(code.co_filename, tb.tb_lineno, frame.f_globals),
            }
        )
        tb = tb.tb_next
    return frames


def _source_line(filename: str, lineno: int, module_globals: Any = None) -> str:
    import linecache

    try:
        return linecache.getline(filename, lineno, module_globals).strip()
    except Exception:
        return ""


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


# -- the client side ------------------------------------------------------------------------


def render_traceback(record: dict[str, Any]) -> str:
    """The remote traceback, chain included, with file names and source lines found
    here for functions that travelled by value (defined in a script or notebook)."""
    if not record.get("frames") and not record.get("exception_only"):
        return str(record.get("traceback") or "")  # written by an older job
    return "".join(_render(record, set()))


def _render(record: dict[str, Any], seen: set[int]) -> list[str]:
    seen.add(id(record))
    out: list[str] = []
    cause, context = record.get("cause"), record.get("context")
    if cause and id(cause) not in seen:
        out += _render(cause, seen)
        out.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif context and id(context) not in seen and not record.get("suppress_context"):
        out += _render(context, seen)
        out.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    frames = record.get("frames") or []
    if frames:
        out.append("Traceback (most recent call last):\n")
    for frame in frames:
        filename, line = _locate(frame)
        out.append(f'  File "{filename}", line {frame.get("lineno")}, in {frame.get("name")}\n')
        if line:
            out.append(f"    {line}\n")
    out.append(record.get("exception_only") or f"{record.get('type')}: {record.get('message')}\n")
    return out


def _locate(frame: dict[str, Any]) -> tuple[str, str]:
    """(file name, source line) of a remote frame, looked up here when the job lacked them."""
    filename = str(frame.get("filename") or "?")
    line = str(frame.get("line") or "")
    lineno = int(frame.get("lineno") or 0)
    if filename == _DYNAMIC or filename.startswith("<"):
        found = _file_of(frame.get("module"), str(frame.get("qualname") or ""))
        if found:
            filename = found
            line = _source_line(found, lineno) or line
    elif not line:
        line = _source_line(filename, lineno)
    return filename, line


def _file_of(module_name: Any, qualname: str) -> str | None:
    """The file that defines ``module_name.qualname`` in this process, if any."""
    module = sys.modules.get(module_name) if isinstance(module_name, str) else None
    if module is None:
        return None
    obj: Any = module
    for part in qualname.split("."):
        if part == "<locals>":
            obj = None
            break
        obj = getattr(obj, part, None)
        if obj is None:
            break
    for attr in ("func", "__func__", "__wrapped__"):
        obj = getattr(obj, attr, obj)
    code = getattr(obj, "__code__", None)
    if code is not None and not code.co_filename.startswith("<dynamic"):
        return str(code.co_filename)
    file = getattr(module, "__file__", None)
    return str(file) if file else None


def rebuild_exception(record: dict[str, Any], job_name: str) -> BaseException:
    """The exception described by ``record``, with its chain and the remote traceback.

    ``SystemExit`` raised by the function (``sys.exit(3)``) becomes a ``JobFailedError``
    with that exit code: the job ended, the caller does not exit silently.
    """
    exc = _rebuild_one(record, job_name)
    tb = render_traceback(record)
    if isinstance(exc, SystemExit):
        code = exc.code
        failed = JobFailedError(
            f"job {job_name}: the function called sys.exit({code!r}) instead of returning or "
            "raising",
            job_name=job_name,
            exit_code=code if isinstance(code, int) else 1,
        )
        failed.__cause__ = exc
        exc = failed
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


def _resolve_class(module_name: str, qualname: str) -> tuple[type[BaseException] | None, str]:
    """The exception class named so, found (imported if need be) here; or the reason not."""
    import importlib

    if not module_name or not qualname or "<locals>" in qualname:
        return None, f"its class {module_name}.{qualname} is defined inside a function"
    try:
        obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
    except Exception as exc:
        return None, (
            f"module {module_name!r} cannot be imported here ({type(exc).__name__}: {exc}); "
            "install it in this environment, or raise an exception type both sides have"
        )
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None, f"module {module_name!r} has no {qualname!r} here"
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        return None, f"{module_name}.{qualname} is not an exception class here"
    return obj, ""


def _rebuild_one(record: dict[str, Any], job_name: str) -> BaseException:
    import pickle

    exc: BaseException | None = None
    why = ""
    cls, why = _resolve_class(
        str(record.get("type_module") or ""), str(record.get("type_qualname") or "")
    )
    if cls is not None and record.get("state") is not None:
        try:
            args, attrs = pickle.loads(record["state"])
            exc = _instantiate(cls, tuple(args), dict(attrs))
        except Exception as err:
            why = f"its args or attributes could not be loaded here ({type(err).__name__}: {err})"
            exc = None
    elif cls is not None:
        why = str(record.get("state_error") or "its args and attributes could not be sent")
    if exc is None and record.get("pickled") is not None:
        try:
            obj = pickle.loads(record["pickled"])
            if isinstance(obj, BaseException):
                exc = obj
        except Exception as err:
            why = why or f"it could not be unpickled here ({type(err).__name__}: {err})"
    if exc is None:
        exc = RemoteFunctionError(
            record["type"], record.get("message", ""), render_traceback(record), job_name
        )
        exc.reason = why or "unknown"  # type: ignore[attr-defined]
        if sys.version_info >= (3, 11):
            exc.add_note(
                f"remote_runtime could not rebuild {record['type']} here: {why or 'unknown reason'}"
            )
    elif record.get("state_error") and sys.version_info >= (3, 11):
        exc.add_note(f"remote_runtime: {record['state_error']}")
    for link in ("cause", "context"):
        if record.get(link):
            try:
                setattr(exc, f"__{link}__", _rebuild_one(record[link], job_name))
            except Exception:
                pass
    exc.__suppress_context__ = bool(record.get("suppress_context"))
    return exc


def _instantiate(
    cls: type[BaseException], args: tuple[Any, ...], attrs: dict[str, Any]
) -> BaseException:
    """An instance of ``cls`` with these args and attributes, ``__init__`` not called
    (built-in exception types, whose constructor only stores and parses args, are called)."""
    if cls.__module__ == "builtins":
        try:
            exc = cls(*args)
        except Exception:
            exc = cls.__new__(cls)
            exc.args = args
    else:
        try:
            exc = cls.__new__(cls, *args)
        except Exception:
            exc = cls.__new__(cls)
        exc.args = args
    exc.__dict__.update(attrs)
    return exc
