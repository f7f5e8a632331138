"""The client side of a job: write its folder, launch it, stream its logs, wait for it,
and turn its outcome into a value or the original exception."""

from __future__ import annotations

import dataclasses
import inspect
import os
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any, TextIO

import remote_codecs as rc

from . import job as J
from .backends import get_backend
from .backends.base import Launched
from .errors import (
    JobFailedError,
    JobTimeoutError,
    RemoteRuntimeError,
    RuntimeEnvironmentError,
)
from .outcome import rebuild_exception
from .settings import Settings, root_uri
from .store import Store

__all__ = ["Job", "submit_job"]

_KILL_GRACE = 10.0  # seconds past max_runtime before the client kills a job itself
_LIVENESS_EVERY = 2.0  # seconds between checks that a job another client launched still runs
_PENDING_GRACE = 60.0  # seconds a job may stay Pending, without a process, after its client died
_TAIL_BYTES = 64 * 1024  # of a log, read for the last lines an error message shows


def store_for(settings: Settings) -> Store:
    """The job root of these settings (with SSE-KMS on every upload when ``s3_kms_key``)."""
    options = dict(settings.storage_options or {})
    if settings.s3_kms_key and root_uri(settings).startswith(("s3://", "s3a://")):
        extra = dict(options.get("s3_additional_kwargs") or {})
        extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=settings.s3_kms_key)
        options["s3_additional_kwargs"] = extra
    store = Store(root_uri(settings), options or None, timeout=settings.store_timeout_in_seconds)
    store.check()
    return store


# -- keys: kept by the client, never written to the store ------------------------------------
#
# Each job's key is HMAC-SHA256(client key, job name): distinct per job (a job learns
# only its own key), and re-derivable on this machine for re-attaching, so no per-job
# secret is ever stored. The client key lives in this machine's cache, readable only by
# its owner.


def _client_key() -> bytes:
    path = os.path.join(J.cache_dir(), "client.key")
    cached = _client_keys.get(path)
    if cached is not None:
        return cached
    _client_keys[path] = key = _read_or_create_client_key(path)
    return key


_client_keys: dict[str, bytes] = {}


def _read_or_create_client_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) == 32:
            return key
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(8)}.tmp"  # threads of one client race here
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # first writer wins; everyone then reads the same key
    except FileExistsError:
        pass
    finally:
        os.remove(tmp)
    with open(path, "rb") as f:
        return f.read()


def job_key(name: str) -> bytes:
    """The key of job ``name`` submitted from this machine."""
    import hashlib
    import hmac

    return hmac.new(_client_key(), name.encode(), hashlib.sha256).digest()


def key_id() -> str:
    """A public fingerprint of this machine's client key, recorded in job.json: a client
    that holds another key knows it cannot verify the job (never a secret)."""
    import hashlib
    import hmac

    return hmac.new(_client_key(), b"remote-runtime key id", hashlib.sha256).hexdigest()[:16]


def recall_key(name: str, spec: dict[str, Any] | None = None) -> bytes | None:
    """The key of job ``name`` if this machine holds the client key that submitted it
    (``spec``'s ``key_id`` tells); else None: the job's bundles cannot be verified here."""
    if not os.path.exists(os.path.join(J.cache_dir(), "client.key")):
        return None
    recorded = (spec or {}).get("key_id")
    if recorded is not None and recorded != key_id():
        return None
    return job_key(name)


# -- submitting ------------------------------------------------------------------------------


def _check_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Wrong arguments raise the TypeError Python would raise, before any job starts."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{getattr(fn, '__qualname__', fn)}() {exc}") from None


def _rename(exc: rc.SerializationError, mapping: dict[str, str]) -> rc.SerializationError:
    message = str(exc)
    for old, new in mapping.items():
        if message.startswith(old):
            message = new + message[len(old) :]
            break
    renamed = type(exc)(message)
    renamed.__cause__ = exc.__cause__
    return renamed


def prepare_job(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], settings: Settings
) -> tuple[J.JobPaths, bytes]:
    """Write a job's folder (everything but its launch); return its paths and key."""
    from .workdir import by_value_unless_importable

    with by_value_unless_importable(fn, settings):
        return _prepare_job(fn, args, kwargs, settings)


def _prepare_job(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], settings: Settings
) -> tuple[J.JobPaths, bytes]:
    _check_call(fn, args, kwargs)
    store = store_for(settings)
    qualname = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    name = J.make_job_name(settings.job_name_prefix, fallback=getattr(fn, "__name__", "job"))
    paths = J.JobPaths(store, name)
    key = job_key(name)
    then = "Nothing half-written is visible: submit the call again once the store answers."
    try:
        with store.guard("writing the job's folder", job=name, then=then):
            try:
                paths.save_bundle("arguments", {"args": list(args), "kwargs": kwargs}, key)
            except rc.SerializationError as exc:
                raise _rename(
                    exc,
                    {"value['args']": "args", "value['kwargs']": "kwargs", "value": "arguments"},
                ) from None
            try:
                function_bundle = paths.save_function(fn, key)
            except rc.SerializationError as exc:
                raise _rename(exc, {"value": "function"}) from None
            execution: dict[str, Any] = {
                "python": _python_version(),
                "function": qualname,
                "function_bundle": function_bundle,
                "max_runtime_in_seconds": settings.max_runtime_in_seconds,
                "pre_execution_commands": settings.pre_execution_commands,
            }
            if settings.include_local_workdir:
                from .workdir import pack_workdir

                data = pack_workdir(settings)
                store.write_bytes(paths.workspace, data)
                execution["workspace"] = J.digest(data)
            if settings.dependencies is not None:
                if settings.dependencies == "auto_capture":
                    from .environment import auto_capture_requirements

                    text = auto_capture_requirements()
                else:
                    with open(settings.dependencies) as f:
                        text = f.read()
                store.write_bytes(paths.requirements, text.encode())
                execution["requirements"] = J.digest(text.encode())
            if settings.pre_execution_script is not None:
                with open(settings.pre_execution_script, "rb") as f:
                    script = f.read()
                store.write_bytes(paths.pre_execution_script, script)
                execution["pre_execution_script"] = J.digest(script)
            spec = J.job_spec(
                name,
                qualname,
                settings.recorded(),
                execution=execution,
                execution_signature=J.sign_execution(key, execution),
                key_id=key_id(),
            )
            # no status.json yet: a job without one is Pending, attempt 1 (read_status);
            # its first transition writes the file (a file less per job)
            store.write_json(paths.spec, spec)
    except BaseException:
        if not store.down:  # no best-effort cleanup once the store is known to be down
            try:
                store.remove(paths.folder)
            except Exception:
                pass
        raise
    return dataclasses.replace(paths, written=execution), key


def _python_version() -> str:
    import platform

    return platform.python_version()


def submit_job(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], settings: Settings
) -> Job:
    """Write the job's folder and launch it on the settings' backend."""
    paths, key = prepare_job(fn, args, kwargs, settings)
    job = Job(paths, key, settings)
    job.launch()
    return job


# -- a job, from the client's side -------------------------------------------------------------


class Job:
    """One job: its folder, its key, and (when launched by this client) its process."""

    def __init__(
        self,
        paths: J.JobPaths,
        key: bytes | None,
        settings: Settings,
        launched: Launched | None = None,
    ) -> None:
        self.paths = paths
        self.key = key
        self.settings = settings
        self.launched = launched
        self.name = paths.name
        self._exit_code: int | None = None
        self._launch_time: float | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._last_liveness = 0.0
        self._ended_with: int | None = None  # the exit code seen by this client
        # the final status read when the job's process ended, for its outcome (read once)
        self._final_status: dict[str, Any] | None = None

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called on this job by this client."""
        return self._stopping

    def launch(self) -> None:
        """Start (or restart) the job; a failed launch marks its folder Failed with the reason."""
        self._launch_time = time.monotonic()
        assert self.key is not None
        _launched_here[self.name] = self
        self._ended_with, self._final_status = None, None
        try:
            self.launched = get_backend(self.settings).launch(self.paths, self.key, self.settings)
        except BaseException as exc:
            self.launched = None
            self._settle_failed_launch(exc)
            raise

    def _settle_failed_launch(self, exc: BaseException) -> None:
        if self.paths.store.down:
            return  # the store is what failed: nothing can be recorded there now
        try:
            with self.paths.store.guard("recording the failed launch", job=self.name):
                self.paths.write_status(
                    J.JobState.FAILED,
                    stage="launch",
                    launch_failed=True,
                    error={
                        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                        "message": f"the job could not be launched: {exc}",
                        "traceback": "",
                    },
                )
        except Exception as record_failure:
            print(
                f"[{self.name}] could not record the failed launch: {record_failure}",
                file=sys.stderr,
            )

    # -- state ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """status.json; a job launched elsewhere whose process or Ray job is gone is
        settled as Failed here (checked at most every few seconds)."""
        status = self.paths.read_status()
        if self.launched is None and status.get("state") not in J.JobState.TERMINAL:
            now = time.monotonic()
            if now - self._last_liveness >= _LIVENESS_EVERY:
                self._last_liveness = now
                status = self._settle_if_gone(status)
        return status

    def _settle_if_gone(self, status: dict[str, Any]) -> dict[str, Any]:
        reason = _gone_reason(self.paths, status, self.settings)
        if reason is None:
            return status
        fresh = self.paths.read_status()  # it may have ended in the meantime
        if fresh.get("state") in J.JobState.TERMINAL:
            return fresh
        if self._recover_results():
            return self.paths.read_status()
        return self.paths.write_status(
            J.JobState.FAILED,
            died=True,
            stage=fresh.get("stage"),
            error={
                "type": "remote_runtime.errors.JobFailedError",
                "message": reason,
                "traceback": "",
            },
        )

    def _recover_results(self) -> bool:
        """A job whose process ended after publishing its results but before recording
        Completed (killed in between, or its last status line lost): its results count,
        and it is recorded Completed, when they verify with the job's key."""
        if self.key is None or not self.paths.has_bundle("results"):
            return False
        try:
            self._load("results")
        except Exception:
            return False  # unverifiable or unreadable: the job failed
        self.paths.write_status(
            J.JobState.COMPLETED, stage="done", exit_code=J.EXIT_OK, recovered=True
        )
        return True

    def logs(self) -> str:
        """The job's stdout then stderr: at most the last LOG_CHUNK bytes of each (a log
        may be larger than memory; the whole of it stays in the job's logs/)."""
        parts = []
        for stream in ("stdout", "stderr"):
            data = self._log_bytes(stream, -J.LOG_CHUNK)
            if len(data) >= J.LOG_CHUNK:
                parts.append(f"[... earlier {stream} output is in the job's logs/{stream}.log]\n")
            if data:
                parts.append(data.decode(errors="replace"))
        return "".join(parts)

    def _log_bytes(self, stream: str, offset: int) -> bytes:
        if self.launched is not None:
            return self.launched.log_chunk(stream, offset)
        return J.read_job_log(self.paths, stream, offset)

    def new_log_bytes(self, stream: str, offset: int, drain: bool = False) -> bytes:
        """The log's bytes from ``offset``: one chunk (LOG_CHUNK), or with ``drain`` all
        there is now (a stream's last read)."""
        data = self._log_bytes(stream, offset)
        if not drain or len(data) < J.LOG_CHUNK:
            return data
        chunks = [data]
        while len(data) >= J.LOG_CHUNK:
            offset += len(data)
            data = self._log_bytes(stream, offset)
            chunks.append(data)
        return b"".join(chunks)

    def log_tail(self, lines: int = 20) -> str:
        text = self._log_bytes("stderr", -_TAIL_BYTES).decode(errors="replace").rstrip()
        if not text:
            text = self._log_bytes("stdout", -_TAIL_BYTES).decode(errors="replace").rstrip()
        tail = text.splitlines()[-lines:]
        return "\n".join(tail)

    # -- waiting ------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None, *, stream_logs: bool = False) -> bool:
        """Wait until the job ends (True) or ``timeout`` passes (False)."""
        streamer = LogStreamer(self) if stream_logs else None
        if streamer is not None:
            streamer.start()
        then = (
            "The job itself is not stopped: re-attach with "
            f"remote_runtime.get_future({self.name!r}) once the store answers."
        )
        try:
            with self.paths.store.guard("waiting for the job", job=self.name, then=then):
                return self._wait(timeout)
        finally:
            if streamer is not None:
                streamer.stop()

    def _wait(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.launched is None:
                if self.status().get("state") in J.JobState.SETTLED:
                    return True
                step = 0.2
            else:
                step = 0.5
                if self.settings.max_runtime_in_seconds and self._launch_time is not None:
                    kill_at = self._launch_time + self.settings.max_runtime_in_seconds + _KILL_GRACE
                    step = max(0.0, min(step, kill_at - time.monotonic()))
                    if step == 0.0:
                        self._kill_for_timeout()
                code = self.launched.wait(
                    step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
                )
                if code is not None:
                    if self._after_exit(code):
                        return True
                    continue
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self.launched is None:
                time.sleep(
                    step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
                )

    def _after_exit(self, code: int) -> bool:
        """The process ended: retry an infrastructure failure, or settle the status."""
        self._ended_with = code
        status = self.paths.read_status()
        if status.get("state") in J.JobState.TERMINAL or self._stopping:
            self._exit_code = code
            if status.get("state") in J.JobState.TERMINAL:
                self._final_status = status
            self._upload_local_logs()
            return True
        if self.launched is not None and self.launched.lost_before_start():
            self.launch()
            return False
        if self._recover_results():
            self._exit_code = code
            self._upload_local_logs()
            return True
        attempt = int(status.get("attempt", 1))
        started = status.get("stage") == "running"
        if not started and attempt < self.settings.max_retry_attempts:
            print(
                f"[{self.name}] the job died before the function started (exit {code}); "
                f"retrying, attempt {attempt + 1} of {self.settings.max_retry_attempts}",
                file=sys.stderr,
            )
            backend = status.get("backend")
            self.paths.write_status(
                J.JobState.PENDING,
                attempt=attempt + 1,
                previous_exit_code=code,
                stage="retrying",
                pid=None,  # the dead attempt's process and Ray job are no longer the job's
                backend={**backend, "submission_id": None} if backend else None,
            )
            self.launch()
            return False
        self.paths.write_status(
            J.JobState.FAILED, exit_code=code, died=True, stage=status.get("stage")
        )
        self._exit_code = code
        self._upload_local_logs()
        return True

    def _upload_local_logs(self) -> None:
        """Logs written on this machine for a remote root go to the job folder (the job
        uploads them itself when it ends normally; this covers crashes)."""
        log_dir = getattr(self.launched, "log_dir", None)
        if log_dir is None or self.paths.store.local or self.paths.store.down:
            return  # (no best-effort uploads to a store known to be down)
        for stream in ("stdout", "stderr"):
            local = os.path.join(log_dir, f"{stream}.log")
            if os.path.exists(local):
                try:
                    self.paths.store.put_file(local, f"{self.paths.logs}/{stream}.log")
                except Exception:
                    pass

    def _kill_for_timeout(self) -> None:
        assert self.launched is not None
        self.launched.stop()
        if self.paths.read_status().get("state") not in J.JobState.TERMINAL:
            limit = self.settings.max_runtime_in_seconds
            self.paths.write_status(
                J.JobState.FAILED,
                timed_out=True,
                exit_code=J.EXIT_TIMEOUT,
                error={
                    "type": "remote_runtime.errors.JobTimeoutError",
                    "message": f"the job exceeded max_runtime_in_seconds={limit}",
                    "traceback": "",
                },
            )

    def stop(self) -> str | None:
        """Stop the job: its processes are killed and its status becomes Stopped. Returns
        None, or, for a job launched elsewhere whose process cannot be proven to be the
        job's, why nothing was signalled (its status is then left as it is)."""
        if self.paths.read_status().get("state") in J.JobState.TERMINAL:
            return None
        self._stopping = True
        if self.launched is not None:
            self.launched.stop()
        elif (refused := _stop_by_pid(self.paths, self.settings)) is not None:
            return refused
        current = self.paths.read_status()
        state = current.get("state")
        # Failed *because it died* may be the launching client seeing our kill first
        if state != J.JobState.COMPLETED and not (
            state == J.JobState.FAILED and not current.get("died")
        ):
            self.paths.write_status(J.JobState.STOPPED, stage="stopped")
        return None

    # -- outcome --------------------------------------------------------------------------------

    def outcome(self) -> Any:
        """The return value of an ended job; raises its exception or the reason it failed."""
        then = (
            "The job's outcome stays in its folder: read it with "
            f"remote_runtime.get_future({self.name!r}).result() once the store answers "
            "(there is no need to run the job again)."
        )
        with self.paths.store.guard("reading the job's outcome", job=self.name, then=then):
            return self._outcome()

    def _load(self, role: str) -> Any:
        """A verified bundle of this job. Without the job's key nothing can be verified,
        so nothing is unpickled: plain data loads, anything that needs pickle is refused."""
        if self.key is not None:
            return self.paths.load_bundle(
                role,
                self.key,
                options={"trusted": J.VERIFIED_TRUST},  # (verified_trust(), imported on use)
            )
        try:
            return self.paths.load_bundle(role, None, allow_pickle=False)
        except rc.IntegrityError:
            raise
        except rc.DeserializationError as exc:
            if "allow_pickle=False" not in str(exc):
                raise
            raise rc.DeserializationError(
                f"job {self.name}: its {role} cannot be verified on this machine (it does not "
                "hold the client key that submitted the job), and loading them needs pickle, "
                "which is refused for unverified data. Read the result on the machine that "
                "submitted the job, or copy that machine's client key "
                f"({os.path.join(J.cache_dir(), 'client.key')}, mode 0600) here."
            ) from None

    def _outcome(self) -> Any:
        status, self._final_status = self._final_status or self.paths.read_status(), None
        state = status.get("state")
        if state == J.JobState.UNKNOWN:
            raise RemoteRuntimeError(
                f"job {self.name}: {status.get('unreadable')}; its state cannot be told. "
                "The job folder was damaged or tampered with: inspect it with "
                f"`remote-runtime jobs show {self.name}`"
            )
        if state == J.JobState.COMPLETED and self.paths.has_bundle("results"):
            return self._load("results")
        if state == J.JobState.STOPPED or (self._stopping and state not in J.JobState.TERMINAL):
            raise CancelledError(f"job {self.name} was stopped")
        if self.paths.has_bundle("exception"):
            record = self._load("exception")
            if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                raise rc.DeserializationError(
                    f"job {self.name}: exception/ does not hold an exception record; "
                    "the job folder is corrupted or was tampered with"
                )
            if self.key is None:
                record = _without_pickles(record)  # unverified: never unpickled
            raise rebuild_exception(record, self.name)
        error = status.get("error") or {}
        code = status.get("exit_code", self._exit_code)
        message = error.get("message", "")
        kind = str(error.get("type", "")).rsplit(".", 1)[-1]
        if status.get("timed_out"):
            raise JobTimeoutError(
                f"job {self.name} was stopped: {message}", job_name=self.name, exit_code=code
            )
        if (
            not status.get("died")
            and code == J.EXIT_ENVIRONMENT
            and kind == "RuntimeEnvironmentError"
        ):
            raise RuntimeEnvironmentError(f"job {self.name}: {message}")
        if not status.get("died") and code == J.EXIT_INTEGRITY:
            cls = rc.IntegrityError if kind == "IntegrityError" else rc.DeserializationError
            raise cls(f"job {self.name} refused its inputs: {message}")
        if state not in J.JobState.TERMINAL:
            raise RemoteRuntimeError(f"job {self.name} has not ended (state {state})")
        raise JobFailedError(
            f"job {self.name} failed: {_describe_exit(code)} before writing a result or an exception"
            + (f"; {message}" if message else "")
            + (f"\n--- last log lines ---\n{tail}" if (tail := self.log_tail()) else ""),
            job_name=self.name,
            exit_code=code,
        )

    def result(self, timeout: float | None = None) -> Any:
        """Wait (streaming logs if the settings say so) and return the outcome."""
        try:
            done = self.wait(timeout, stream_logs=self.settings.stream_logs)
        except KeyboardInterrupt:
            print(
                f"\nInterrupted while waiting: job {self.name} keeps running. Re-attach with "
                f"remote_runtime.get_future({self.name!r}) or `remote-runtime jobs show {self.name}`.",
                file=sys.stderr,
                flush=True,
            )
            raise
        if not done:
            raise TimeoutError(f"job {self.name} did not end within {timeout} s")
        return self.outcome()


def verified_trust() -> tuple[str, ...]:
    """Types trusted in bundles verified with a job's key: what the job's own code made
    (scikit-learn's internal types, which skops does not trust from a stranger)."""
    from remote_codecs.codecs.sklearn import SCIKIT_LEARN_INTERNAL_TYPES

    return SCIKIT_LEARN_INTERNAL_TYPES


def _without_pickles(record: dict[str, Any]) -> dict[str, Any]:
    """An exception record with its pickled exceptions dropped (rebuilt from text instead)."""
    out = {k: v for k, v in record.items() if k != "pickled"}
    for link in ("cause", "context"):
        if isinstance(out.get(link), dict):
            out[link] = _without_pickles(out[link])
    return out


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it ended"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"it was killed by {name} (signal {-code})"
    return f"it exited with code {code}"


def _stop_by_pid(paths: J.JobPaths, settings: Settings) -> str | None:
    """Stop a job started by another client: through its backend's record (Ray: only
    the job's own submission on this client's Ray address), or the process tree of the
    pid in its status, once that pid is proven to be the job's process
    (processes.job_process). None when stopped (or its process is gone), else why
    nothing was signalled."""
    from .processes import NotJobProcess, job_process, kill_tree

    status = paths.read_status()
    if status.get("state") == J.JobState.UNKNOWN:
        return f"{status.get('unreadable')}: which process is the job's cannot be told"
    backend = status.get("backend") or {}
    if backend.get("name") == "ray":
        from .backends.ray import _address, stop_detached
        from .records import printable

        # a planted address would receive this client's Ray credentials; a planted
        # submission id would stop another job
        mine = _address(settings.ray_address)
        if backend.get("address") != mine or backend.get("submission_id") != paths.name:
            return (
                f"status.json names Ray job {printable(backend.get('submission_id'))} at "
                f"{printable(backend.get('address'))}; this client stops only its own job "
                f"({paths.name}) at its ray_address ({mine})"
            )
        stop_detached(mine, paths.name)
        return None
    if status.get("pid") is None:
        return None  # never started: Stopped keeps it from counting as pending
    pid = status["pid"]
    claim = J.claim_of(pid) if type(pid) is int and pid > 1 else None
    try:
        pid = job_process(status, paths.name, J.hostname(), claim)
    except NotJobProcess as exc:
        return None if exc.gone else f"nothing was signalled: {exc}"
    kill_tree(pid, status["pid_start"])  # (False: it ended a moment ago)
    return None


def _gone_reason(paths: J.JobPaths, status: dict[str, Any], settings: Settings) -> str | None:
    """Why a job that has not ended can no longer end by itself (its Ray job ended, its
    process is gone, its client died before it started), or None when it may still run
    or nothing can tell from here."""
    launcher = _launched_here.get(paths.name)
    if launcher is not None and launcher._ended_with is not None:
        return (
            f"its process ended ({_describe_exit(launcher._ended_with)}) without recording "
            "an outcome"
        )
    backend = status.get("backend") or {}
    if backend.get("name") == "ray" and backend.get("submission_id"):
        from .backends.ray import ray_job_state

        answer = ray_job_state(
            str(backend.get("address")),
            str(backend["submission_id"]),
            settings.ray_timeout_in_seconds,
        )
        if answer is None or answer[0] in ("PENDING", "RUNNING"):
            return None
        ray_status, message = answer
        return (
            f"its Ray job {backend['submission_id']} at {backend.get('address')} is "
            f"{ray_status} but the job did not record an outcome"
            + (f" ({message})" if message else "")
        )
    pid, host = status.get("pid"), status.get("host")
    if pid and host == J.hostname():
        if _job_process_alive(int(pid), paths.name, bool(status.get("worker"))):
            return None
        return f"its process {pid} on {host} is gone without recording an outcome"
    if not pid and not backend:
        try:
            spec = paths.read_spec()
        except Exception:
            return None
        client_pid, updated = spec.get("client_pid"), status.get("updated") or spec.get("created")
        if (
            spec.get("client_host") == J.hostname()
            and client_pid
            and not _pid_alive(int(client_pid))
            and isinstance(updated, (int, float))
            and time.time() - updated > _PENDING_GRACE
        ):
            return (
                f"the client that submitted it (pid {client_pid} on {spec.get('client_host')}) "
                "exited and the job never started"
            )
    return None


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _job_process_alive(pid: int, name: str, worker: bool) -> bool:
    """Whether ``pid`` is still this job's process (its command line names the job, or,
    for a warm worker, remote_runtime's worker), so a reused pid is not taken for it."""
    if not _pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: the pid alone decides
    return name in cmdline or (worker and "remote_runtime" in cmdline)


# Jobs launched by this process, by name: a re-attached future in the same process learns
# from them that a job's process ended even when the store could not record it then.
_launched_here: weakref.WeakValueDictionary[str, Job] = weakref.WeakValueDictionary()


class LogStreamer(threading.Thread):
    """Copies a job's new log lines to this process's stdout/stderr, prefixed by its name."""

    def __init__(self, job: Job, interval: float = 0.1) -> None:
        super().__init__(name=f"logs-{job.name}", daemon=True)
        self.job = job
        self.interval = interval
        self._stop_event = threading.Event()
        self._offsets = {"stdout": 0, "stderr": 0}
        self._partial = {"stdout": b"", "stderr": b""}

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._pump(final=False)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self._pump(final=True)

    def _pump(self, final: bool) -> None:
        for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            try:
                data = self.job.new_log_bytes(stream, self._offsets[stream], drain=final)
            except Exception:
                continue
            self._offsets[stream] += len(data)
            data = self._partial[stream] + data
            lines = data.split(b"\n")
            last = lines.pop()  # b"" after a final newline, else an unfinished line
            if final and last:
                lines.append(last)
            self._partial[stream] = b"" if final else last
            _emit(out, self.job.name, lines)


def _emit(out: TextIO, name: str, lines: list[bytes]) -> None:
    if not lines:
        return
    text = "".join(f"[{name}] {line.decode(errors='replace')}\n" for line in lines)
    try:
        out.write(text)
        out.flush()
    except Exception:
        pass
