"""The job side: ``python -m remote_runtime.bootstrap <job_uri>``.

Verifies and decodes the function and its arguments, runs the function, and writes the
return value (``results/``) or the exception (``exception/``), ``status.json`` and the
logs. Exit codes: 0 success, 1 the function raised, 3 environment failure (interpreter
version, dependencies, pre-execution commands), 4 integrity failure (inputs failed
verification), 124 max runtime exceeded, 70 internal error.

The final writes (the result or exception, status.json, the logs) are retried with
backoff when the store fails, for up to ``final_write_retry_in_seconds`` in all (from the
job's recorded settings; 300 s by default), the value staying in memory meanwhile; a job
that still cannot write exits with code 70 and its client settles it as Failed.

The per-job key arrives in the environment (``REMOTE_RUNTIME_JOB_KEY``), never through
the store; it is removed from the environment before the user's code runs.
"""

from __future__ import annotations

# Only the standard library at import time: a job started with the wrong interpreter
# must still be able to say so (see _precheck), before anything else is imported.
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import job as J

KEY_ENV = "REMOTE_RUNTIME_JOB_KEY"
LOG_DIR_ENV = "REMOTE_RUNTIME_LOG_DIR"  # set when logs are written locally, then uploaded
IN_VENV_ENV = "REMOTE_RUNTIME_IN_VENV"


def _python_version() -> str:
    """This interpreter's version, as platform.python_version() gives it (without
    importing platform: a cold job pays for every import)."""
    major, minor, micro, level, serial = sys.version_info
    tail = (
        ""
        if level == "final"
        else {"alpha": "a", "beta": "b", "candidate": "rc"}[level] + str(serial)
    )
    return f"{major}.{minor}.{micro}{tail}"


class _IntegrityFailure(Exception):
    pass


def split_job_uri(job_uri: str) -> tuple[str, str]:
    root, _, name = job_uri.rstrip("/").rpartition("/")
    if not root or not name:
        raise ValueError(f"not a job URI: {job_uri!r} (expected <root>/<job_name>)")
    return root, name


EXIT_ENVIRONMENT = 3  # (also in job.py, which this module cannot import before the precheck)


def _precheck(job_uri: str) -> int | None:
    """With the standard library only: refuse an interpreter whose major.minor differs
    from the client's, before anything is imported or unpickled."""
    from .records import (
        MAX_RECORD,
        JobRecordError,
        check_real_folder,
        parse_status,
        read_local_file,
        read_local_record,
        status_line,
    )

    root, name = split_job_uri(job_uri)
    if "://" in root and not root.startswith("file://"):
        return None  # checked again by run_job, once fsspec can be imported
    folder = os.path.join(root[len("file://") :] if root.startswith("file://") else root, name)
    try:
        check_real_folder(folder)  # run_job refuses it; write nothing through a link here
        client_py = str(read_local_record(os.path.join(folder, "job.json"))["execution"]["python"])
    except (OSError, ValueError, KeyError, TypeError):  # JobRecordError is a ValueError
        return None
    want = ".".join(client_py.split(".")[:2])
    if want == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return None
    message = (
        f"the job's Python is {_python_version()} ({sys.executable}) but the client's is "
        f"{client_py}: the function travels by value and needs the same major.minor version. "
        f"Run the job with a Python {want} interpreter (python=...)."
    )
    status_path = os.path.join(folder, "status.json")
    try:
        status = parse_status(status_path, read_local_file(status_path, MAX_RECORD))
    except (OSError, JobRecordError):
        status = {}
    status.update(
        state="Failed",
        exit_code=EXIT_ENVIRONMENT,
        updated=time.time(),
        ended=time.time(),
        pid=os.getpid(),
        host=os.uname().nodename,
        error={
            "type": "remote_runtime.errors.RuntimeEnvironmentError",
            "message": message,
            "traceback": "",
        },
    )
    tmp = f"{status_path}.tmp-{os.urandom(8).hex()}"  # a new file, never through a link
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(tmp, flags, 0o644), "wb") as f:
        f.write(status_line(status))
    os.replace(tmp, status_path)
    print(f"remote-runtime: job {name} failed: RuntimeEnvironmentError: {message}", file=sys.stderr)
    return EXIT_ENVIRONMENT


class _FinalWrites:
    """The budget for retrying the job's final writes while the store fails."""

    seconds = 300.0
    armed = False  # retry only once the job knows its budget (its job.json was read)
    deadline: float | None = None  # set at the first failure


def _final(paths: J.JobPaths, what: str, action: Any) -> Any:
    """Run ``action()`` (a final write), retrying store failures with backoff until the
    final-write budget is spent; then the last failure is raised."""
    from .store import is_service_failure

    delay = 0.5
    while True:
        try:
            return action()
        except Exception as exc:
            if paths.store.local or not _FinalWrites.armed or not is_service_failure(exc):
                raise
            now = time.monotonic()
            if _FinalWrites.deadline is None:
                _FinalWrites.deadline = now + _FinalWrites.seconds
            left = _FinalWrites.deadline - now
            if left <= 0:
                raise
            print(
                f"remote-runtime: job {paths.name}: the store failed while {what} "
                f"({type(exc).__name__}: {str(exc)[:200]}); retrying for up to {left:.0f} s more",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(min(delay, left))
            delay = min(delay * 2, 15.0)


def _raise_if_store_failed(paths: J.JobPaths, exc: Exception) -> None:
    """A store failure while reading the inputs is no verdict on them: let it end the job
    as an infrastructure failure (which the client may retry)."""
    from .store import is_service_failure

    if not paths.store.local and is_service_failure(exc):
        raise exc


def _fail(paths: J.JobPaths, code: int, exc: BaseException, **fields: Any) -> int:
    import traceback

    from . import job as J

    _before_final()
    _final(
        paths,
        "writing the status",
        lambda: paths.write_status(
            J.JobState.FAILED,
            exit_code=code,
            error={
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            },
            **fields,
        ),
    )
    print(
        f"remote-runtime: job {paths.name} failed: {type(exc).__name__}: {exc}",
        file=sys.stderr,
        flush=True,
    )
    return code


def run_job(paths: J.JobPaths, key: bytes | None, *, worker: bool = False) -> int:
    """Run one job whose folder is ``paths``; return the exit code. Used by the fresh
    process entry point and by warm workers alike."""
    from . import job as J
    from .errors import RuntimeEnvironmentError
    from .processes import identity

    # 0. The folder and its subfolders must be real directories inside the root: a link
    # planted there would make the job write (and remove part files) somewhere else.
    try:
        paths.check_folder()
    except J.JobRecordError as exc:  # not even status.json can be written safely
        print(f"remote-runtime: job {paths.name} refused its folder: {exc}", file=sys.stderr)
        return J.EXIT_INTEGRITY
    try:
        paths.check_folder(*_FOLDERS)
    except J.JobRecordError as exc:
        from remote_codecs import IntegrityError

        return _fail(paths, J.EXIT_INTEGRITY, IntegrityError(str(exc)))

    _FinalWrites.armed, _FinalWrites.deadline = False, None  # a warm worker runs many jobs
    attempt = paths.read_status().get("attempt", 1)
    where = {
        **identity(),  # pid, its start time and the boot id: what cancel checks
        "host": os.uname().nodename,
        "python": _python_version(),
        "attempt": attempt,
        "worker": worker,
    }
    if not worker:  # a warm worker prepares in no time: it reports once, when the function starts
        paths.write_status(J.JobState.IN_PROGRESS, stage="preparing", **where)
    try:
        spec = paths.read_spec()
        execution = spec["execution"]
    except J.JobRecordError as exc:
        from remote_codecs import IntegrityError

        return _fail(paths, J.EXIT_INTEGRITY, IntegrityError(str(exc)))
    except Exception as exc:
        return _fail(paths, J.EXIT_INTERNAL, exc)
    budget = (spec.get("settings") or {}).get("final_write_retry_in_seconds")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget >= 0:
        _FinalWrites.seconds = float(budget)
    _FinalWrites.armed = True

    # 1. The interpreter must match the client's major.minor before anything is unpickled.
    client_py = str(execution.get("python", ""))
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if ".".join(client_py.split(".")[:2]) != mine:
        return _fail(
            paths,
            J.EXIT_ENVIRONMENT,
            RuntimeEnvironmentError(
                f"the job's Python is {_python_version()} ({sys.executable}) but the client's is "
                f"{client_py}: the function travels by value and needs the same major.minor version. "
                f"Run the job with a Python {'.'.join(client_py.split('.')[:2])} interpreter (python=...)."
            ),
        )

    # 2. The execution record must be signed with this job's key.
    try:
        if key is None:
            raise _IntegrityFailure(f"no job key in {KEY_ENV}: the job cannot verify its inputs")
        import hmac

        if not hmac.compare_digest(
            str(spec.get("execution_signature", "")), J.sign_execution(key, execution)
        ):
            raise _IntegrityFailure(
                "job.json's execution record does not match its signature (tampered with)"
            )
    except _IntegrityFailure as exc:
        from remote_codecs import IntegrityError

        return _fail(paths, J.EXIT_INTEGRITY, IntegrityError(str(exc)))

    workdir = None
    try:
        # 3. Dependencies: run inside the cached venv for them.
        requirements = execution.get("requirements")
        if requirements is not None and not worker:
            text = _verified_text(paths, paths.requirements, requirements)
            if os.environ.get(IN_VENV_ENV) != requirements:
                from .environment import ensure_venv

                python = ensure_venv(text)
                os.environ[IN_VENV_ENV] = requirements
                os.environ[KEY_ENV] = key.hex()
                sys.stdout.flush()
                sys.stderr.flush()
                os.execv(
                    python,
                    [python, "-m", "remote_runtime.bootstrap", paths.store.uri_of(paths.name)],
                )
        # 4. The working directory: the uploaded workspace, or an empty scratch folder.
        workdir = _prepare_workdir(paths, execution, worker)
        # 5. Pre-execution commands.
        if execution.get("pre_execution_commands") or execution.get("pre_execution_script"):
            from .environment import run_pre_execution

            script = None
            if execution.get("pre_execution_script"):
                script = os.path.join(workdir, ".pre_execution.sh")
                with open(script, "w") as f:
                    f.write(
                        _verified_text(
                            paths, paths.pre_execution_script, execution["pre_execution_script"]
                        )
                    )
            run_pre_execution(execution.get("pre_execution_commands"), script, workdir)
    except _IntegrityFailure as exc:
        from remote_codecs import IntegrityError

        return _fail(paths, J.EXIT_INTEGRITY, IntegrityError(str(exc)))
    except RuntimeEnvironmentError as exc:
        return _fail(paths, J.EXIT_ENVIRONMENT, exc)
    except Exception as exc:
        _raise_if_store_failed(paths, exc)
        return _fail(
            paths,
            J.EXIT_ENVIRONMENT,
            RuntimeEnvironmentError(f"could not prepare the job: {type(exc).__name__}: {exc}"),
        )

    try:
        return _run_function(paths, key, execution, workdir, where)
    finally:
        if workdir is not None:
            _cleanup_workdir(workdir, keep=worker and execution.get("workspace") is None)


_FOLDERS = ("function", "arguments", "results", "exception", "logs", "workdir")


def _refused_folder(paths: J.JobPaths, which: str) -> int | None:
    """Check ``which`` (results/ or exception/) again right before writing it."""
    from . import job as J

    try:
        paths.check_folder(which)
    except J.JobRecordError as exc:
        from remote_codecs import IntegrityError

        return _fail(paths, J.EXIT_INTEGRITY, IntegrityError(str(exc)))
    return None


def _verified_text(paths: J.JobPaths, path: str, expected: str) -> str:
    from . import job as J

    data = paths.store.read_bytes(path)
    if J.digest(data) != expected:
        raise _IntegrityFailure(
            f"{path} does not match the digest in the signed job record (tampered with)"
        )
    return data.decode()


def worker_scratch() -> str:
    """The empty scratch folder a warm worker's jobs without a workspace run in: made
    once, emptied after each job (a job that left files in it gets a fresh one)."""
    from . import job as J

    return os.path.join(J.cache_dir(), "work", f"worker-{os.getpid()}")


def _prepare_workdir(paths: J.JobPaths, execution: dict[str, Any], worker: bool = False) -> str:
    from . import job as J

    expected = execution.get("workspace")
    if worker and expected is None:
        workdir = worker_scratch()
        if not os.path.isdir(workdir):
            os.makedirs(workdir, exist_ok=True)
        sys.path.insert(0, workdir)
        os.chdir(workdir)
        return workdir
    workdir = os.path.join(J.cache_dir(), "work", f"{paths.name}-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    if expected is not None:
        data = paths.store.read_bytes(paths.workspace)
        if J.digest(data) != expected:
            raise _IntegrityFailure(
                "workdir/workspace.zip does not match the signed job record (tampered with)"
            )
        from .workdir import unpack_workdir

        unpack_workdir(data, workdir)
    sys.path.insert(0, workdir)
    os.chdir(workdir)
    return workdir


def _cleanup_workdir(workdir: str, keep: bool = False) -> None:
    if sys.path and sys.path[0] == workdir:
        sys.path.pop(0)
    try:
        os.chdir(os.path.dirname(workdir))
    except OSError:
        pass
    if keep:
        try:
            if not os.listdir(workdir):
                return  # empty: the next job of this worker runs in it
        except OSError:
            return
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
        return
    try:
        os.rmdir(workdir)  # the common case: the job left nothing behind
    except OSError:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _run_function(
    paths: J.JobPaths,
    key: bytes | None,
    execution: dict[str, Any],
    workdir: str,
    where: dict[str, Any],
) -> int:
    import remote_codecs as rc

    from . import job as J

    try:
        reuse = bool(where.get("worker"))  # a warm worker: see JobPaths.load_function
        function = paths.load_function(key, execution.get("function_bundle"), reuse=reuse)
        arguments = paths.load_bundle(
            "arguments",
            key,
            options={"trusted": J.VERIFIED_TRUST},  # verified with the job's key: the client's
        )
        args, kwargs = arguments["args"], arguments["kwargs"]
        if not callable(function) or type(args) is not list or type(kwargs) is not dict:
            raise rc.DeserializationError("function/ or arguments/ do not hold a call")
    except Exception as exc:
        _raise_if_store_failed(paths, exc)
        if isinstance(exc, rc.DeserializationError):
            return _fail(paths, J.EXIT_INTEGRITY, exc)
        return _fail(
            paths,
            J.EXIT_INTEGRITY,
            rc.DeserializationError(
                f"the job could not load its function or arguments: {type(exc).__name__}: {exc}"
            ),
        )

    watchdog = _start_watchdog(paths, execution.get("max_runtime_in_seconds"))
    paths.write_status(
        J.JobState.IN_PROGRESS, stage="running", function_started=time.time(), **where
    )
    try:
        value = function(*args, **kwargs)
    except BaseException as exc:
        if watchdog is not None:
            watchdog.cancel()
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is not None:
            exc = exc.with_traceback(exc.__traceback__.tb_next)  # start at the user's frame
        return _write_exception(paths, key, exc)
    if watchdog is not None:
        watchdog.cancel()
    if (refused := _refused_folder(paths, "results")) is not None:
        return refused
    try:
        _save_outcome(paths, key, "results", value)
    except rc.SerializationError as exc:
        renamed = type(exc)(_rename_root(str(exc), "return value"))
        return _write_exception(paths, key, renamed)
    _before_final()
    _final(
        paths,
        "writing the status",
        lambda: paths.write_status(J.JobState.COMPLETED, stage="done", exit_code=J.EXIT_OK),
    )
    return J.EXIT_OK


def _save_outcome(paths: J.JobPaths, key: bytes | None, role: str, value: Any) -> None:
    """Write ``results/`` or ``exception/``, signed for this job and role, retried while
    the store is down (``_final``)."""
    _final(paths, f"writing the {role}", lambda: paths.save_bundle(role, value, key))


def _rename_root(message: str, root: str) -> str:
    return root + message[len("value") :] if message.startswith("value") else message


def _write_exception(paths: J.JobPaths, key: bytes | None, exc: BaseException) -> int:

    from . import job as J
    from .outcome import exception_record

    record = exception_record(exc)
    if (refused := _refused_folder(paths, "exception")) is not None:
        return refused
    _save_outcome(paths, key, "exception", record)
    _before_final()
    _final(
        paths,
        "writing the status",
        lambda: paths.write_status(
            J.JobState.FAILED,
            stage="done",
            exit_code=J.EXIT_USER_ERROR,
            error={
                "type": record["type"],
                "message": record["message"],
                "traceback": record["traceback"],
            },
        ),
    )
    return J.EXIT_USER_ERROR


# Set by a warm worker while a job runs: what must happen before the watchdog kills the
# worker for that job (copy the job's spooled output into its logs).
before_expiry: Any = None
# Set by a warm worker while a job runs: what must happen before the job's final status is
# written (its spooled output copied into its logs, so whoever sees the job ended finds
# them complete).
before_final: Any = None


def _before_final() -> None:
    if before_final is not None:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            before_final()
        except Exception:
            pass  # the logs are copied again when the job's end is reported


def _start_watchdog(paths: J.JobPaths, limit: int | None) -> Any:
    if not limit:
        return None
    import signal

    from . import job as J

    def expire() -> None:
        paths.write_status(
            J.JobState.FAILED,
            exit_code=J.EXIT_TIMEOUT,
            timed_out=True,
            error={
                "type": "remote_runtime.errors.JobTimeoutError",
                "message": f"the job exceeded max_runtime_in_seconds={limit}",
                "traceback": "",
            },
        )
        print(
            f"remote-runtime: job {paths.name} exceeded max_runtime_in_seconds={limit}; stopping it",
            file=sys.stderr,
            flush=True,
        )
        if before_expiry is not None:
            try:
                sys.stdout.flush()
                before_expiry()
            except Exception:
                pass
        _upload_logs(paths)
        try:
            from .processes import kill_descendants

            kill_descendants(patience=1.0)  # also those that left the process group
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(J.EXIT_TIMEOUT)

    return _WATCHDOG.arm(float(limit), expire)


class _Watchdog:
    """One timer thread for every job of the process, started once: a warm worker runs
    many jobs, and starting a thread per job costs more than a trivial job. The thread is
    woken only when a job is due before the time it sleeps until: a cancelled or later
    deadline is found when it wakes (a wake-up per job cost more than the job)."""

    def __init__(self) -> None:
        import threading

        self._cond = threading.Condition()
        self._due: float | None = None
        self._action: Any = None
        self._armed = 0
        self._thread: Any = None
        self._sleeps_until = float("inf")  # when the thread wakes up by itself

    def arm(self, seconds: float, action: Any) -> _Armed:
        import threading

        with self._cond:
            self._armed += 1
            self._due, self._action = time.monotonic() + seconds, action
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()
            if self._due < self._sleeps_until:
                self._cond.notify()
            return _Armed(self, self._armed)

    def cancel(self, armed: int) -> None:
        with self._cond:
            if self._armed == armed:
                self._due = self._action = None  # (found when the thread wakes up)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._due is None:
                        self._sleeps_until = float("inf")
                        self._cond.wait()
                        continue
                    left = self._due - time.monotonic()
                    if left <= 0:
                        action, self._due, self._action = self._action, None, None
                        break
                    self._sleeps_until = self._due
                    self._cond.wait(left)
                self._sleeps_until = float("inf")
            action()


class _Armed:
    def __init__(self, watchdog: _Watchdog, armed: int) -> None:
        self._watchdog, self._armed_id = watchdog, armed

    def cancel(self) -> None:
        self._watchdog.cancel(self._armed_id)


_WATCHDOG = _Watchdog()


def _upload_logs(paths: J.JobPaths) -> None:
    _upload_logs_from(paths, os.environ.get(LOG_DIR_ENV))


def _upload_logs_from(paths: J.JobPaths, local: str | None) -> None:
    """Copy the job's local log files into its folder when the root is not local."""
    if not local or paths.store.local:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    for name in ("stdout.log", "stderr.log"):
        src = os.path.join(local, name)
        if os.path.exists(src):
            try:
                _final(
                    paths,
                    "uploading the logs",
                    lambda src=src, name=name: paths.store.put_file(src, f"{paths.logs}/{name}"),
                )
            except Exception:
                pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m remote_runtime.bootstrap <job_uri>", file=sys.stderr)
        return 2
    code = _precheck(argv[0])
    if code is not None:
        return code
    from . import job as J
    from .processes import become_subreaper, has_children, kill_descendants
    from .store import Store

    become_subreaper()  # what the function starts stays ours, to be stopped when it ends
    key_hex = os.environ.pop(KEY_ENV, None)
    key = bytes.fromhex(key_hex) if key_hex else None
    root, name = split_job_uri(argv[0])
    J.check_job_name(name)
    storage_options = json.loads(os.environ.get("REMOTE_RUNTIME_STORAGE_OPTIONS", "{}") or "{}")
    paths = J.JobPaths(Store(root, storage_options or None), name)
    try:
        return run_job(paths, key)
    except Exception as exc:
        from .store import is_service_failure

        if paths.store.local or not is_service_failure(exc):
            raise
        print(
            f"remote-runtime: job {name}: "
            f"{paths.store.describe_failure(exc, 'writing the job outcome', name)} "
            f"Gave up after final_write_retry_in_seconds={_FinalWrites.seconds:g}.",
            file=sys.stderr,
            flush=True,
        )
        return J.EXIT_INTERNAL
    finally:
        if has_children():  # (none: no descendant either, this process is a subreaper)
            kill_descendants()  # no process of the job outlives it
        _upload_logs(paths)


if __name__ == "__main__":
    sys.exit(main())
