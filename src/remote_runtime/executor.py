"""RemoteExecutor: a ``concurrent.futures.Executor`` whose work items are jobs.

Built like ``concurrent.futures.ThreadPoolExecutor``: a queue of work items and at most
``max_parallel_jobs`` threads, started only when no idle one can take the job, each
holding only a weak reference to the executor (an executor that is garbage collected
lets its threads finish the queue and exit). At interpreter exit every executor's
threads are joined, so submitted jobs run to completion (the standard library's
contract); an interrupted exit marks the queued jobs Stopped, never leaves them Pending.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from . import job as J
from .api import launch, prepare
from .client import Job
from .futures import Future, _Watcher
from .settings import Settings, resolve_settings

__all__ = ["RemoteExecutor"]

# Seconds the first Ctrl-C waits for running jobs; a second Ctrl-C within it stops them.
INTERRUPT_GRACE = 2.0

_threads_queues: weakref.WeakKeyDictionary[threading.Thread, queue.SimpleQueue[Any]] = (
    weakref.WeakKeyDictionary()
)
_states: weakref.WeakSet[_State] = weakref.WeakSet()
_shutdown = False
_global_lock = threading.Lock()


def _python_exit() -> None:
    """At interpreter exit (before atexit hooks): let every executor finish its queue."""
    global _shutdown
    with _global_lock:
        _shutdown = True
    items = list(_threads_queues.items())
    for _, q in items:
        q.put(None)
    try:
        for thread, _ in items:
            thread.join()
    except KeyboardInterrupt:
        for state in list(_states):
            state.interrupt("the client was interrupted while exiting")


if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_python_exit)
else:  # pragma: no cover - Python < 3.9 is not supported; kept for other interpreters
    import atexit

    atexit.register(_python_exit)


class _State:
    """What an executor's threads share with it (never the executor itself)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self.shutdown = False
        self.lock = threading.Lock()
        self.running: set[Future] = set()
        self.detached = threading.Event()
        self.idle = threading.Semaphore(0)

    def interrupt(self, reason: str) -> None:
        """Ctrl-C: cancel what is queued, name what runs; a second Ctrl-C within
        ``INTERRUPT_GRACE`` seconds stops the running jobs, else they keep running."""
        with self.lock:
            self.shutdown = True
        cancelled = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item.future._cancel(reason):
                cancelled += 1
        self.queue.put(None)  # idle threads exit
        with self.lock:
            running = [f for f in self.running if not f.done()]
        names = ", ".join(f.job_name for f in running)
        lines = [f"\nremote-runtime: interrupted; cancelled {cancelled} queued job(s)."]
        if running:
            lines.append(
                f"{len(running)} job(s) keep running: {names}\n"
                "Re-attach with remote_runtime.get_future(NAME); press Ctrl-C again now to stop them."
            )
        _say("\n".join(lines))
        if not running:
            return
        try:
            concurrent.futures.wait(running, timeout=INTERRUPT_GRACE)
        except KeyboardInterrupt:
            for f in running:
                f._cancel("stopped: the client was interrupted twice")
            _say(f"remote-runtime: stopped {names}")
            return
        with self.lock:
            self.detached.set()
        for f in running:
            if not f.done():
                _Watcher.add(f)  # result() still works here once the job ends


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except Exception:
        pass


class _WorkItem:
    def __init__(self, future: Future, job: Job, state: _State) -> None:
        self.future = future
        self.job = job
        self.state = state

    def run(self) -> Callable[[], None]:
        """Run the job to its end; return what settles its future (called once the
        thread counts as idle again, so the caller's next job reuses this thread)."""
        future, job, state = self.future, self.job, self.state
        if not future.set_running_or_notify_cancel():
            return _nothing  # cancelled while queued: never started (cancel() marked it Stopped)
        with state.lock:
            state.running.add(future)
        try:
            return self._run(future, job, state)
        finally:
            with state.lock:
                state.running.discard(future)

    def _run(self, future: Future, job: Job, state: _State) -> Callable[[], None]:
        try:
            launch(job)
        except BaseException as exc:
            return functools.partial(_settle_exception, future, exc)
        if job.stopping and job.launched is not None:  # cancel() came during the launch
            job.launched.stop()
            if job.status().get("state") not in (J.JobState.COMPLETED, J.JobState.FAILED):
                job.paths.write_status(J.JobState.STOPPED, stage="stopped")
        pump = _LogPump(job) if state.settings.stream_logs else None
        try:
            step = 0.1 if pump is not None else 0.25
            while not job.wait(step):
                if pump is not None:
                    pump.pump(final=False)
                if state.detached.is_set():
                    return _nothing  # the client was interrupted: the job runs on alone
        except BaseException as exc:
            return functools.partial(_settle_exception, future, exc)
        finally:
            if pump is not None:
                pump.pump(final=True)
        if future.done():  # cancelled while running: cancel() settled it
            return _nothing
        try:
            value = job.outcome()
        except concurrent.futures.CancelledError:
            return functools.partial(_settle_cancel, future)
        except BaseException as exc:
            return functools.partial(_settle_exception, future, exc)
        return functools.partial(_settle_result, future, value)


def _nothing() -> None:
    pass


def _settle_exception(future: Future, exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile


def _settle_cancel(future: Future) -> None:
    try:
        future._cancel("stopped")
    except Exception:  # confirming the stop read the store, which failed: the job's own
        future._mark_cancelled()  # outcome said it was stopped


def _settle_result(future: Future, value: Any) -> None:
    try:
        future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile


class _LogPump:
    """Copies a job's new log lines to this process's stdout/stderr, prefixed by its
    name, from the thread that waits for the job (no thread of its own); a progress
    line is cleared first and redrawn after."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.offsets = {"stdout": 0, "stderr": 0}
        self.partial = {"stdout": b"", "stderr": b""}

    def pump(self, final: bool) -> None:
        from .progress import write_above

        for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            try:
                data = self.job.new_log_bytes(stream, self.offsets[stream], drain=final)
            except Exception:
                continue
            self.offsets[stream] += len(data)
            data = self.partial[stream] + data
            lines = data.split(b"\n")
            last = lines.pop()
            if final and last:
                lines.append(last)
            self.partial[stream] = b"" if final else last
            if lines:
                text = "".join(
                    f"[{self.job.name}] {line.decode(errors='replace')}\n" for line in lines
                )
                write_above(out, text)


def _worker(
    executor_ref: weakref.ref[RemoteExecutor], state: _State
) -> None:  # like concurrent.futures.thread._worker
    work_queue = state.queue
    while True:
        item = work_queue.get(block=True)
        if item is not None:
            future = item.future
            try:
                settle = item.run()
            except BaseException as exc:  # a bug of ours: it goes to the future
                settle = functools.partial(_settle_exception, future, exc)
            del item
            state.idle.release()
            try:
                settle()
            except BaseException as exc:  # settling read the store, which failed (stopping
                _settle_exception(future, exc)  # a job): the future ends, the thread lives
            del settle, future
            continue
        executor = executor_ref()
        if _shutdown or executor is None or state.shutdown:
            work_queue.put(None)  # wake the next thread
            return
        del executor


class RemoteExecutor(concurrent.futures.Executor):
    """Runs each submitted call as a job, at most ``max_parallel_jobs`` at a time (FIFO).

    Takes every setting of :func:`remote_runtime.remote`. With
    ``keep_alive_period_in_seconds > 0`` a worker that finished a job stays alive that
    long and takes the next job needing the same environment, so warm jobs cost a few
    milliseconds. Every job still has its folder under the root.

        with RemoteExecutor(max_parallel_jobs=2) as ex:
            futures = [ex.submit(divide, 10, i) for i in range(1, 5)]
            print([f.result() for f in futures])

    Ctrl-C inside ``with``: queued jobs are cancelled, running ones are named (re-attach
    with ``get_future``) and keep running; a second Ctrl-C right away stops them.
    """

    _counter = itertools.count()

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
        self._state = _State(self.settings)
        _states.add(self._state)
        self._threads: set[threading.Thread] = set()
        self._shutdown_lock = threading.Lock()
        self._name = f"RemoteExecutor-{next(self._counter)}"

    # -- concurrent.futures.Executor -------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Write the job's folder now (a value that cannot travel fails here) and queue it.

        An ``@remote`` function runs its underlying function (no nested job); an
        ``async def`` function runs to completion in the job.
        """
        self._check_open()
        job = prepare(fn, args, kwargs, self.settings)
        future = Future(job)
        with self._shutdown_lock:
            try:
                self._check_open()
            except RuntimeError:
                job.paths.write_status(
                    J.JobState.STOPPED, stage="cancelled", reason="the executor was shut down"
                )
                raise
            self._state.queue.put(_WorkItem(future, job, self._state))
            self._adjust_thread_count()
        return future

    def _check_open(self) -> None:
        if self._state.shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def _adjust_thread_count(self) -> None:
        if self._state.idle.acquire(timeout=0):
            return  # an idle thread takes it
        state = self._state

        def wake(_: object, q: queue.SimpleQueue[Any] = state.queue) -> None:
            q.put(None)

        if len(self._threads) < self.max_parallel_jobs:
            thread = threading.Thread(
                name=f"{self._name}_{len(self._threads)}",
                target=_worker,
                args=(weakref.ref(self, wake), state),
                daemon=True,
            )
            thread.start()
            self._threads.add(thread)
            _threads_queues[thread] = state.queue

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        progress: bool = False,
    ) -> Iterator[Any]:
        """Like ``Executor.map``: every call is submitted now, results come lazily in
        order; ``timeout`` counts from this call. ``progress=True`` shows a live line of
        completed, failed, stopped, running and pending jobs."""
        end_time = None if timeout is None else timeout + time.monotonic()
        fs = [self.submit(fn, *args) for args in zip(*iterables)]
        bar = None
        if progress:
            from .progress import ProgressBar

            bar = ProgressBar(fs).start()
        return _result_iterator(fs, end_time, bar)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more jobs; ``cancel_futures`` cancels the queued ones (Stopped);
        ``wait`` waits until every started job has ended."""
        with self._shutdown_lock:
            self._state.shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._state.queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item.future._cancel("cancelled by shutdown(cancel_futures=True)")
            self._state.queue.put(None)
        if wait:
            try:
                for thread in list(self._threads):
                    thread.join()
            except KeyboardInterrupt:
                self._state.interrupt("the client was interrupted")
                raise

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Literal[False]:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._state.interrupt("the client was interrupted")
            return False
        self.shutdown(wait=True)
        return False

    @property
    def running_jobs(self) -> list[str]:
        """Names of the jobs running now."""
        with self._state.lock:
            return sorted(f.job_name for f in self._state.running if not f.done())


def _result_iterator(fs: list[Future], end_time: float | None, bar: Any) -> Iterator[Any]:
    """Yield the futures' results in order; on an error or early close, cancel the rest
    (holds no reference to a result it has yielded)."""
    try:
        fs.reverse()
        while fs:
            if end_time is None:
                yield _result_or_cancel(fs.pop())
            else:
                yield _result_or_cancel(fs.pop(), end_time - time.monotonic())
    finally:
        for future in fs:
            future.cancel()
        if bar is not None:
            bar.stop()


def _result_or_cancel(fut: Future, timeout: float | None = None) -> Any:
    try:
        try:
            return fut.result(timeout)
        finally:
            fut.cancel()
    finally:
        del fut  # break the reference cycle with the exception
