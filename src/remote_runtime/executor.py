"""RemoteExecutor: a ``concurrent.futures.Executor`` whose work items are jobs."""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import job as J
from .client import Job, prepare_job
from .futures import Future
from .settings import Settings, resolve_settings

__all__ = ["RemoteExecutor"]

_STOP = object()


class RemoteExecutor(concurrent.futures.Executor):
    """Runs each submitted call as a job, at most ``max_parallel_jobs`` at a time (FIFO).

    Takes every setting of :func:`remote_runtime.remote`. With
    ``keep_alive_period_in_seconds > 0`` a worker that finished a job stays alive that
    long and takes the next job needing the same environment, so warm jobs cost a few
    milliseconds. Every job still has its folder under the root.

        with RemoteExecutor(max_parallel_jobs=2) as ex:
            futures = [ex.submit(divide, 10, i) for i in range(1, 5)]
            print([f.result() for f in futures])
    """

    def __init__(
        self,
        max_parallel_jobs: int | None = None,
        *,
        max_parallel_job: int | None = None,
        **settings: Any,
    ) -> None:
        if (
            max_parallel_jobs is not None
            and max_parallel_job is not None
            and max_parallel_jobs != max_parallel_job
        ):
            raise TypeError("give max_parallel_jobs or its alias max_parallel_job, not both")
        limit = max_parallel_jobs if max_parallel_jobs is not None else max_parallel_job
        limit = 1 if limit is None else limit
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"max_parallel_jobs must be an integer >= 1, got {limit!r}")
        self.max_parallel_jobs = limit
        self.settings: Settings = resolve_settings(settings, "RemoteExecutor()")
        self._queue: collections.deque[tuple[Future, Job] | object] = collections.deque()
        self._cond = threading.Condition()
        self._slots: list[threading.Thread] = []
        self._shutdown = False
        self._running = 0

    # -- concurrent.futures.Executor -------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Write the job's folder now (a value that cannot travel fails here) and queue it."""
        with self._cond:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        paths, key = prepare_job(fn, args, kwargs, self.settings)
        job = Job(paths, key, self.settings)
        future = Future(job)
        with self._cond:
            if self._shutdown:
                job.paths.write_status(J.JobState.STOPPED, stage="executor shut down")
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.append((future, job))
            if len(self._slots) < self.max_parallel_jobs:
                slot = threading.Thread(
                    target=self._slot, name=f"remote-executor-slot-{len(self._slots)}", daemon=True
                )
                self._slots.append(slot)
                slot.start()
            self._cond.notify()
        return future

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        progress: bool = False,
    ) -> Iterator[Any]:
        """Like ``Executor.map``: every call is submitted now, results come lazily in order.

        ``progress=True`` shows a live bar of pending, running, done and failed jobs.
        """
        end = None if timeout is None else time.monotonic() + timeout
        futures = [self.submit(fn, *args) for args in zip(*iterables)]
        bar = None
        if progress:
            from .progress import ProgressBar

            bar = ProgressBar(futures).start()

        def results() -> Iterator[Any]:
            try:
                futures.reverse()
                while futures:
                    f = futures.pop()
                    yield f.result(None if end is None else max(0.0, end - time.monotonic()))
            finally:
                for f in futures:
                    f.cancel()
                if bar is not None:
                    bar.stop()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._shutdown = True
            cancelled = []
            if cancel_futures:
                while self._queue:
                    item = self._queue.popleft()
                    if item is not _STOP:
                        cancelled.append(item)
            for _ in self._slots:
                self._queue.append(_STOP)
            self._cond.notify_all()
            slots = list(self._slots)
        for item in cancelled:
            item[0].cancel()  # type: ignore[index]
        if wait:
            for slot in slots:
                slot.join()

    # -- the slots: each runs one job at a time ----------------------------------------------

    def _slot(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
            if item is _STOP:
                return
            future, job = item  # type: ignore[misc]
            self._run(future, job)  # type: ignore[has-type]

    def _run(self, future: Future, job: Job) -> None:
        if not future.set_running_or_notify_cancel():
            return  # cancelled while queued: never started
        try:
            job.launch()
            job.wait(stream_logs=self.settings.stream_logs)
        except BaseException as exc:  # the launch itself failed
            if not future.done():
                future.set_exception(exc)
            return
        if future.done() or job.stopping:  # cancelled while running: cancel() settles it
            return
        try:
            value = job.outcome()
        except concurrent.futures.CancelledError:
            future.cancel()
            return
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(value)
