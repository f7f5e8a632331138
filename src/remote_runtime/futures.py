"""Futures of jobs: ``concurrent.futures.Future`` objects that also know their job, and
re-attaching to jobs from their folders alone (``get_future``, ``list_futures``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import time
from collections.abc import Generator, Iterator
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, RUNNING
from typing import Any

from . import job as J
from .client import Job, recall_key, store_for
from .errors import RemoteRuntimeError, ServiceError
from .records import JobRecordError
from .settings import Settings, resolve_settings

__all__ = ["Future", "get_future", "list_futures"]


class Future(concurrent.futures.Future):  # type: ignore[type-arg]
    """A job's future: works with ``as_completed``, ``wait``, ``add_done_callback`` and
    ``asyncio.wrap_future`` (and can be awaited), and also knows its job.

    ``cancel()`` on a job that has not started means it never starts; on a running job
    it stops the job (its processes are killed, its status becomes Stopped) and
    ``result()`` raises ``CancelledError``.
    """

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        self._lazy_outcome = False

    @property
    def job_name(self) -> str:
        return self.job.name

    def status(self) -> str:
        """The job's state: Pending, InProgress, Completed, Failed or Stopped."""
        return str(self.job.status().get("state", J.JobState.PENDING))

    def describe(self) -> dict[str, Any]:
        """The job's spec (job.json) and status record (status.json)."""
        return {"spec": self.job.paths.read_spec(), "status": self.job.status()}

    def logs(self) -> str:
        """Everything the job printed so far (stdout, then stderr)."""
        return self.job.logs()

    def cancel(self) -> bool:
        """Cancel the job: a queued job never starts; a running job is stopped (its
        processes are killed, its status becomes Stopped). False when it has already ended."""
        return self._cancel("cancelled before start")

    def _cancel(self, reason: str) -> bool:
        if super().cancel():
            self.job.paths.write_status(J.JobState.STOPPED, stage="cancelled", reason=reason)
            return True
        with self._condition:
            if self._state != RUNNING:
                return False
        if self.job.status().get("state") in (J.JobState.COMPLETED, J.JobState.FAILED):
            return False  # it ended already: the executor settles its outcome
        self.job.stop()
        if self.job.status().get("state") in (J.JobState.COMPLETED, J.JobState.FAILED):
            return False  # it ended while being stopped
        return self._mark_cancelled()

    def _mark_cancelled(self) -> bool:
        """Settle a running future as cancelled (its job was stopped)."""
        with self._condition:
            if self._state != RUNNING:  # the watcher saw it end (Stopped): settle it now
                self._materialize()
                return self._state == CANCELLED_AND_NOTIFIED
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the job ends or ``timeout`` seconds pass (SageMaker's ``Future.wait``);
        raises nothing: call ``result()`` for the value or the exception."""
        self._wait_done(timeout)

    # -- lazily decoded outcomes (re-attached futures) -------------------------------------

    def _finish_lazily(self) -> None:
        """Mark done now; decode the result or exception on first ``result()``."""
        with self._condition:
            self._lazy_outcome = True
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_result(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]

    def _materialize(self) -> None:
        with self._condition:
            if not self._lazy_outcome:
                return
            self._lazy_outcome = False
            try:
                self._result = self.job.outcome()
            except concurrent.futures.CancelledError:
                self._state = CANCELLED_AND_NOTIFIED
            except BaseException as exc:
                self._exception = exc

    def _wait_done(self, timeout: float | None) -> bool:
        """Wait once, for at most ``timeout`` seconds in all, until the future is done."""
        if self._lazy_outcome:
            return True
        with self._condition:
            return self._condition.wait_for(
                lambda: self._state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED), timeout
            )

    def result(self, timeout: float | None = None) -> Any:
        """The job's return value; raises its exception, ``CancelledError`` if it was
        cancelled, or ``TimeoutError`` if it has not ended within ``timeout`` seconds."""
        exc = self._outcome(timeout)
        if exc is not None:
            try:
                raise exc.with_traceback(None)  # the remote traceback is in its notes
            finally:
                del exc
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The job's exception (None if it returned); ``CancelledError`` and
        ``TimeoutError`` as for ``result()``."""
        return self._outcome(timeout)

    def _outcome(self, timeout: float | None) -> BaseException | None:
        if not self._wait_done(timeout):
            raise concurrent.futures.TimeoutError(
                f"job {self.job_name} did not end within {timeout} s (it keeps running)"
            )
        self._materialize()
        with self._condition:
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                raise concurrent.futures.CancelledError(f"job {self.job_name} was cancelled")
            exc: BaseException | None = self._exception
            return exc

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self).__await__()

    def __repr__(self) -> str:
        return f"<Future job={self.job_name} state={self._state}>"


# -- re-attaching ------------------------------------------------------------------------------------


class _Watcher(threading.Thread):
    """One thread that finishes re-attached futures when their jobs end (polls status)."""

    _instance: _Watcher | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__(name="remote-runtime-watcher", daemon=True)
        self.futures: list[Future] = []
        self.wake = threading.Event()

    @classmethod
    def add(cls, future: Future) -> None:
        with cls._lock:
            if cls._instance is None or not cls._instance.is_alive():
                cls._instance = cls()
                cls._instance.futures.append(future)
                cls._instance.start()
            else:
                cls._instance.futures.append(future)

    def run(self) -> None:
        while True:
            with self._lock:
                pending = [f for f in self.futures if not f.done()]
                self.futures = pending
                if not pending:
                    _Watcher._instance = None
                    return
            for future in pending:
                try:
                    settled = future.job.status().get("state") in J.JobState.SETTLED
                except ServiceError:
                    continue  # the store does not answer now: asked again next round
                except Exception as exc:  # this job's folder cannot be read: its future fails
                    error = RemoteRuntimeError(
                        f"job {future.job.name}: its folder cannot be read ({exc}); inspect "
                        f"it with `remote-runtime jobs show {future.job.name}`"
                    )
                    try:
                        future.set_exception(error)
                    except concurrent.futures.InvalidStateError:
                        pass
                    continue
                if settled and not future.done():
                    future._finish_lazily()
            time.sleep(0.2)


def _attached(name: str, settings: Settings) -> Future:
    paths = J.JobPaths(store_for(settings), J.check_job_name(name))
    if not paths.store.exists(paths.spec):
        raise LookupError(f"no job named {name!r} under {paths.store.uri}")
    try:
        spec: dict[str, Any] | None = paths.read_spec()
    except JobRecordError:
        spec = None  # unreadable: the signatures still decide what loads
    future = Future(Job(paths, recall_key(name, spec), settings))
    state = paths.read_status().get("state")
    if state in J.JobState.SETTLED:
        future._finish_lazily()
    else:
        future.set_running_or_notify_cancel()
        _Watcher.add(future)
    return future


def get_future(job_name: str, s3_root_uri: str | None = None, **settings: Any) -> Future:
    """A future for an existing job, rebuilt from its folder (in any process, on any
    machine that sees the root). The result is decoded on ``result()``.

    Results are verified with the job's key when this machine holds the client key that
    submitted the job (the key never leaves it). Elsewhere nothing can be verified, so
    nothing is unpickled: plain results load (their hashes checked), results that need
    pickle are refused with a message saying how to carry the key.
    """
    if s3_root_uri is not None:
        settings["s3_root_uri"] = s3_root_uri
    return _attached(job_name, resolve_settings(settings, "get_future()"))


_STATES = {
    state.lower(): state
    for state in (
        J.JobState.PENDING,
        J.JobState.IN_PROGRESS,
        J.JobState.COMPLETED,
        J.JobState.FAILED,
        J.JobState.STOPPED,
    )
}


def canonical_state(status: str) -> str:
    """``status`` spelled as the job records spell it (case-insensitive); ValueError if
    it names no state."""
    if not isinstance(status, str) or status.lower().replace("_", "") not in _STATES:
        raise ValueError(
            f"status={status!r} is not a job state: use one of {', '.join(_STATES.values())}"
        )
    return _STATES[status.lower().replace("_", "")]


def list_futures(
    job_name_prefix: str | None = None,
    s3_root_uri: str | None = None,
    *,
    status: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    **settings: Any,
) -> Iterator[Future]:
    """Futures of the jobs under the root whose name starts with ``job_name_prefix``
    (as given, or as it appears in job names: ``my_job`` finds ``my-job-...``), oldest
    first (``newest_first=True`` for the reverse), optionally only those in state
    ``status`` (any case) and at most ``limit`` of them. Nothing is decoded."""
    if s3_root_uri is not None:
        settings["s3_root_uri"] = s3_root_uri
    wanted = canonical_state(status) if status is not None else None
    resolved = resolve_settings(settings, "list_futures()")
    store = store_for(resolved)
    prefixes = (job_name_prefix, J.name_prefix(job_name_prefix)) if job_name_prefix else ()
    names = [
        n
        for n in store.list_names()
        if J.NAME_RE.match(n) and (not prefixes or any(n.startswith(p) for p in prefixes))
    ]
    count = 0
    for name in sorted(names, key=_creation_order, reverse=newest_first):
        if limit is not None and count >= limit:
            return
        try:
            future = _attached(name, resolved)
        except LookupError:
            continue  # not a job folder (or one being written)
        if wanted is None or future.status() == wanted:
            count += 1
            yield future


_STAMP = re.compile(r"-(\d{8})-(\d{6})-?(\d{3})-[0-9a-z]+$")


def _creation_order(name: str) -> tuple[str, str]:
    """The UTC timestamp in the name, then the name."""
    match = _STAMP.search(name)
    return ("".join(match.groups()), name) if match else ("", name)
