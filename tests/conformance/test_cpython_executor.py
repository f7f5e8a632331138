"""CPython's Lib/test/test_concurrent_futures, the executor-generic parts, run against
RemoteExecutor and, as the control, ThreadPoolExecutor (the ``kind`` fixture).

Ported (CPython test names; each test below names its origin):
  test_executor.py    ExecutorTest: test_submit, test_submit_keyword, test_map,
                      test_map_exception, test_map_timeout, test_shutdown_race_issue12456,
                      test_no_stale_references, test_max_workers_negative, test_free_reference;
                      ThreadPoolExecutorTest: test_map_submits_without_iteration,
                      test_idle_thread_reuse, test_saturation
  test_wait.py        WaitTests: test_20369, test_first_completed,
                      test_first_completed_some_already_completed, test_first_exception,
                      test_first_exception_some_already_complete,
                      test_first_exception_one_already_failed, test_all_completed, test_timeout
  test_as_completed.py AsCompletedTests: test_no_timeout, test_future_times_out,
                      test_duplicate_futures, test_free_reference_yielded_future,
                      test_correct_timeout_exception_msg
  test_shutdown.py    ExecutorShutdownTest: test_run_after_shutdown, test_interpreter_shutdown,
                      test_submit_after_interpreter_shutdown, test_hang_issue12364,
                      test_cancel_futures, test_cancel_futures_wait_false;
                      ThreadPoolShutdownTest: test_threads_terminate,
                      test_context_manager_shutdown, test_del_shutdown, test_shutdown_no_wait
  test_future.py      FutureTests (through futures an executor returns): test_done_callback_with_result,
                      test_done_callback_with_exception, test_done_callback_with_cancel,
                      test_done_callback_raises, test_done_callback_already_successful,
                      test_done_callback_already_failed, test_done_callback_already_cancelled,
                      test_cancel, test_result_with_timeout, test_result_with_success,
                      test_result_with_cancel, test_exception_with_timeout,
                      test_exception_with_success, test_running_and_done

Left out as not executor-generic: process-pool deadlock/start-method tests, initializer
tests (RemoteExecutor has no initializer), Future tests that build futures in chosen
internal states. Deliberate differences (README, "Many jobs: RemoteExecutor") are marked
``DIFFERENCE`` where a test branches on the kind.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import logging
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from remote_runtime import RemoteExecutor

TIMEOUT = 1.0  # a wait that a quick job always beats
LONG = 2.5  # a job that always outlasts TIMEOUT


def mul(x, y):
    return x * y


def capture(*args, **kwargs):
    return args, kwargs


def sleep_and_raise(t):
    time.sleep(t)
    raise Exception("this is an exception")


def sleep_and_return(t, value):
    time.sleep(t)
    return value


def divide_by(x):
    return 1 / x


class MyObject:
    def my_method(self):
        pass


def make_dummy_object(_):
    return MyObject()


# -- test_executor.py ---------------------------------------------------------------------------


def test_submit(make_executor):  # ExecutorTest.test_submit
    ex = make_executor()
    future = ex.submit(pow, 2, 8)
    assert future.result() == 256


def test_submit_keyword(make_executor):  # ExecutorTest.test_submit_keyword
    ex = make_executor()
    future = ex.submit(mul, 2, y=8)
    assert future.result() == 16
    future = ex.submit(capture, 1, self=2, fn=3)
    assert future.result() == ((1,), {"self": 2, "fn": 3})
    with pytest.raises(TypeError):
        ex.submit(fn=capture, arg=1)
    with pytest.raises(TypeError):
        ex.submit(arg=1)


def test_map(make_executor):  # ExecutorTest.test_map
    ex = make_executor()
    assert list(ex.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert list(ex.map(pow, range(10), range(10), chunksize=3)) == list(
        map(pow, range(10), range(10))
    )


def test_map_exception(make_executor):  # ExecutorTest.test_map_exception
    ex = make_executor()
    i = ex.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert i.__next__() == (0, 1)
    assert i.__next__() == (0, 1)
    with pytest.raises(ZeroDivisionError):
        i.__next__()


def test_map_timeout(make_executor):  # ExecutorTest.test_map_timeout
    ex = make_executor(3)
    results = []
    with pytest.raises(cf.TimeoutError):
        for i in ex.map(time.sleep, [0, 0, LONG], timeout=TIMEOUT):
            results.append(i)
    assert results == [None, None]


def test_map_timeout_is_not_doubled(make_executor):  # ExecutorTest.test_map_timeout, exactly
    ex = make_executor(1)
    with pytest.raises(cf.TimeoutError):  # the job ends after 1.5 timeouts: too late
        list(ex.map(time.sleep, [1.5 * TIMEOUT], timeout=TIMEOUT))


def test_shutdown_race_issue12456(make_executor):  # ExecutorTest.test_shutdown_race_issue12456
    ex = make_executor()
    ex.map(str, [2] * 3)
    ex.shutdown()


def test_no_stale_references(make_executor):  # ExecutorTest.test_no_stale_references
    # Issue #16284: the executor keeps no reference to the submitted callable's object.
    ex = make_executor()
    my_object = MyObject()
    my_object_collected = threading.Event()
    ref = weakref.ref(my_object, lambda obj: my_object_collected.set())
    ex.submit(my_object.my_method).result()
    del my_object
    gc.collect()
    assert my_object_collected.wait(timeout=5), "the callable's object was kept alive"
    assert ref() is None


def test_max_workers_negative(kind):  # ExecutorTest.test_max_workers_negative
    factory = cf.ThreadPoolExecutor if kind == "thread" else RemoteExecutor
    for number in (0, -1):
        with pytest.raises(ValueError):
            factory(number)


def test_free_reference(make_executor):  # ExecutorTest.test_free_reference
    # Issue #14406: the result iterator keeps no reference to the results it yielded.
    ex = make_executor()
    for obj in ex.map(make_dummy_object, range(5)):
        wr = weakref.ref(obj)
        del obj
        gc.collect()
        assert wr() is None


def test_map_submits_without_iteration(make_executor, tmp_path):
    # ThreadPoolExecutorTest.test_map_submits_without_iteration: map submits every call now.
    ex = make_executor()
    marks = [str(tmp_path / f"mark{i}") for i in range(5)]
    ex.map(open, marks, ["w"] * 5)  # never iterated
    ex.shutdown(wait=True)
    assert all((tmp_path / f"mark{i}").exists() for i in range(5))


def _threads_named(prefix):
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_idle_thread_reuse(make_executor):  # ThreadPoolExecutorTest.test_idle_thread_reuse
    ex = make_executor(5)
    ex.submit(mul, 21, 2).result()
    ex.submit(mul, 6, 7).result()
    ex.submit(mul, 3, 14).result()
    assert len(ex._threads) == 1  # sequential jobs: one thread, not one per job
    ex.shutdown(wait=True)


def test_saturation(make_executor):  # ThreadPoolExecutorTest.test_saturation
    ex = make_executor(4)
    futures = [ex.submit(sleep_and_return, 0.3, i) for i in range(12)]
    assert len(ex._threads) == 4  # never more threads than max workers
    assert [f.result() for f in futures] == list(range(12))


# -- test_wait.py ---------------------------------------------------------------------------------


@pytest.fixture
def finished(make_executor):
    """Already-finished futures of the kind under test: successful, failed, cancelled."""
    ex = make_executor(1)
    ok = ex.submit(mul, 21, 2)
    bad = ex.submit(divide_by, 0)
    cf.wait([ok, bad])
    blocker = ex.submit(time.sleep, 0.3)
    cancelled = ex.submit(mul, 1, 1)
    assert cancelled.cancel()
    blocker.result()
    return {"ok": ok, "bad": bad, "cancelled": cancelled}


def test_20369(make_executor):  # WaitTests.test_20369: duplicate futures
    ex = make_executor()
    future = ex.submit(time.sleep, 0.1)
    done, not_done = cf.wait([future, future], return_when=cf.ALL_COMPLETED)
    assert done == {future} and not_done == set()


def test_first_completed(make_executor):  # WaitTests.test_first_completed
    ex = make_executor()
    future1 = ex.submit(mul, 21, 2)
    future2 = ex.submit(time.sleep, LONG)
    done, not_done = cf.wait([future1, future2], return_when=cf.FIRST_COMPLETED)
    assert done == {future1} and not_done == {future2}


def test_first_completed_some_already_completed(make_executor, finished):
    # WaitTests.test_first_completed_some_already_completed
    ex = make_executor()
    future1 = ex.submit(time.sleep, LONG)
    done, not_done = cf.wait(
        [finished["cancelled"], finished["ok"], future1], return_when=cf.FIRST_COMPLETED
    )
    assert done == {finished["cancelled"], finished["ok"]} and not_done == {future1}


def test_first_exception(make_executor):  # WaitTests.test_first_exception
    ex = make_executor(3)
    future1 = ex.submit(mul, 2, 21)
    future2 = ex.submit(sleep_and_raise, 0.2)
    future3 = ex.submit(time.sleep, LONG)
    done, not_done = cf.wait([future1, future2, future3], return_when=cf.FIRST_EXCEPTION)
    assert done == {future1, future2} and not_done == {future3}


def test_first_exception_some_already_complete(make_executor, finished):
    # WaitTests.test_first_exception_some_already_complete
    ex = make_executor()
    future1 = ex.submit(divmod, 21, 0)
    future2 = ex.submit(time.sleep, LONG)
    done, not_done = cf.wait(
        [finished["ok"], finished["cancelled"], future1, future2],
        return_when=cf.FIRST_EXCEPTION,
    )
    assert done == {finished["ok"], finished["cancelled"], future1}
    assert not_done == {future2}


def test_first_exception_one_already_failed(make_executor, finished):
    # WaitTests.test_first_exception_one_already_failed
    ex = make_executor()
    future1 = ex.submit(time.sleep, LONG)
    done, not_done = cf.wait([finished["bad"], future1], return_when=cf.FIRST_EXCEPTION)
    assert done == {finished["bad"]} and not_done == {future1}


def test_all_completed(make_executor, finished):  # WaitTests.test_all_completed
    ex = make_executor()
    future1 = ex.submit(divmod, 2, 0)
    future2 = ex.submit(mul, 2, 21)
    futures = [finished["ok"], finished["cancelled"], finished["bad"], future1, future2]
    done, not_done = cf.wait(futures, return_when=cf.ALL_COMPLETED)
    assert done == set(futures) and not_done == set()


def test_timeout(make_executor, finished):  # WaitTests.test_timeout
    ex = make_executor()
    future1 = ex.submit(mul, 6, 7)
    future2 = ex.submit(time.sleep, LONG)
    futures = [finished["ok"], finished["bad"], finished["cancelled"], future1, future2]
    done, not_done = cf.wait(futures, timeout=TIMEOUT, return_when=cf.ALL_COMPLETED)
    assert done == set(futures[:4]) and not_done == {future2}


# -- test_as_completed.py -------------------------------------------------------------------------


def test_no_timeout(make_executor):  # AsCompletedTests.test_no_timeout
    ex = make_executor()
    future1 = ex.submit(mul, 2, 21)
    future2 = ex.submit(mul, 7, 6)
    completed = set(cf.as_completed([future1, future2]))
    assert completed == {future1, future2}


def test_future_times_out(make_executor, finished):  # AsCompletedTests.test_future_times_out
    ex = make_executor()
    already = {finished["cancelled"], finished["bad"], finished["ok"]}
    for timeout in (0, 0.05):
        future = ex.submit(time.sleep, LONG)
        completed = set()
        with pytest.raises(cf.TimeoutError):
            for f in cf.as_completed(already | {future}, timeout):
                completed.add(f)
        assert completed == already


def test_duplicate_futures(make_executor):  # AsCompletedTests.test_duplicate_futures
    ex = make_executor()
    future1 = ex.submit(time.sleep, 0.2)
    completed = list(cf.as_completed([future1, future1]))
    assert len(completed) == 1


def test_free_reference_yielded_future(make_executor):
    # AsCompletedTests.test_free_reference_yielded_future
    ex = make_executor()
    futures_list = [ex.submit(mul, i, 1) for i in range(3)]
    futures_list.append(ex.submit(time.sleep, LONG))
    with pytest.raises(cf.TimeoutError):
        for future in cf.as_completed(futures_list, timeout=TIMEOUT):
            futures_list.remove(future)
            wr = weakref.ref(future)
            del future
            gc.collect()
            assert wr() is None
    futures_list[0].cancel()


def test_correct_timeout_exception_msg(make_executor, finished):
    # AsCompletedTests.test_correct_timeout_exception_msg
    ex = make_executor()
    futures_list = [
        finished["cancelled"],
        finished["ok"],
        ex.submit(time.sleep, LONG),
        ex.submit(time.sleep, LONG),
    ]
    with pytest.raises(cf.TimeoutError, match=r"2 \(of 4\) futures unfinished"):
        for _ in cf.as_completed(futures_list, timeout=0):
            pass


# -- test_shutdown.py -----------------------------------------------------------------------------


def test_run_after_shutdown(make_executor):  # ExecutorShutdownTest.test_run_after_shutdown
    ex = make_executor()
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(pow, 2, 5)


def _script(kind, body):
    header = (
        "from concurrent.futures import ThreadPoolExecutor as Executor\n"
        if kind == "thread"
        else "from remote_runtime import RemoteExecutor as Executor\n"
    )
    return header + textwrap.dedent(body)


def _run(code, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


def test_interpreter_shutdown(kind):  # ExecutorShutdownTest.test_interpreter_shutdown
    # jobs submitted before the interpreter exits run to completion
    out = _run(
        _script(
            kind,
            """
            from time import sleep
            def sleep_and_print(t, msg):
                sleep(t)
                print(msg, flush=True)
            context = Executor(1)
            context.submit(sleep_and_print, 0.5, "apple")
            """,
        )
    )
    assert out.returncode == 0, out.stderr
    assert "apple" in out.stdout  # streamed as "[job] apple" by RemoteExecutor


def test_submit_after_interpreter_shutdown(kind):
    # ExecutorShutdownTest.test_submit_after_interpreter_shutdown
    out = _run(
        _script(
            kind,
            """
            import atexit
            @atexit.register
            def run_last():
                try:
                    t.submit(id, None)
                except RuntimeError:
                    print("runtime-error")
                    raise
            t = Executor()
            t.submit(id, 42).result()
            """,
        )
    )
    assert "RuntimeError: cannot schedule new futures" in out.stderr
    assert out.stdout.strip() == "runtime-error"


def test_hang_issue12364(make_executor):  # ExecutorShutdownTest.test_hang_issue12364
    ex = make_executor(2)
    fs = [ex.submit(time.sleep, 0.05) for _ in range(10)]
    ex.shutdown()
    for f in fs:
        f.result()


def test_cancel_futures(make_executor):  # ExecutorShutdownTest.test_cancel_futures
    ex = make_executor(3)
    fs = [ex.submit(time.sleep, 0.3) for _ in range(20)]
    ex.shutdown(cancel_futures=True)
    cancelled = [fut for fut in fs if fut.cancelled()]
    assert len(cancelled) >= 10  # at most 3 were started, plus a few being handed over
    others = [fut for fut in fs if not fut.cancelled()]
    for fut in others:
        assert fut.done() and fut.exception() is None


def test_cancel_futures_wait_false(kind):  # ExecutorShutdownTest.test_cancel_futures_wait_false
    out = _run(
        _script(
            kind,
            """
            import time
            t = Executor()
            t.submit(time.sleep, 0.1)
            t.shutdown(wait=False, cancel_futures=True)
            """,
        )
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_threads_terminate(make_executor):  # ThreadPoolShutdownTest.test_threads_terminate
    ex = make_executor(3)
    sem = [ex.submit(time.sleep, 0.2) for _ in range(3)]
    assert len(ex._threads) == 3
    for f in sem:
        f.result()
    ex.shutdown()
    for t in ex._threads:
        t.join(5)
        assert not t.is_alive()


def test_context_manager_shutdown(kind):  # ThreadPoolShutdownTest.test_context_manager_shutdown
    factory = cf.ThreadPoolExecutor if kind == "thread" else RemoteExecutor
    kwargs = {} if kind == "thread" else {"stream_logs": False, "keep_alive_period_in_seconds": 30}
    with factory(5, **kwargs) as e:
        assert list(e.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        threads = list(e._threads)
    for t in threads:
        assert not t.is_alive()


def test_del_shutdown(kind):  # ThreadPoolShutdownTest.test_del_shutdown
    factory = cf.ThreadPoolExecutor if kind == "thread" else RemoteExecutor
    kwargs = {} if kind == "thread" else {"stream_logs": False, "keep_alive_period_in_seconds": 30}
    executor = factory(5, **kwargs)
    res = executor.map(abs, range(-5, 5))
    threads = list(executor._threads)
    del executor
    gc.collect()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert list(res) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]


def test_shutdown_no_wait(kind):  # ThreadPoolShutdownTest.test_shutdown_no_wait
    factory = cf.ThreadPoolExecutor if kind == "thread" else RemoteExecutor
    kwargs = {} if kind == "thread" else {"stream_logs": False, "keep_alive_period_in_seconds": 30}
    executor = factory(5, **kwargs)
    res = executor.map(abs, range(-5, 5))
    threads = list(executor._threads)
    executor.shutdown(wait=False)
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert list(res) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]


# -- test_future.py, through futures an executor returns ----------------------------------------


def test_done_callback_with_result(make_executor):  # FutureTests.test_done_callback_with_result
    ex = make_executor()
    callback_result = []
    done = threading.Event()

    def fn(callback_future):
        callback_result.append(callback_future.result())
        done.set()

    f = ex.submit(mul, 1, 5)
    f.add_done_callback(fn)
    assert done.wait(30) and callback_result == [5]


def test_done_callback_with_exception(make_executor):
    # FutureTests.test_done_callback_with_exception
    ex = make_executor()
    seen = []
    done = threading.Event()

    def fn(callback_future):
        seen.append(callback_future.exception().args[0])
        done.set()

    f = ex.submit(sleep_and_raise, 0)
    f.add_done_callback(fn)
    assert done.wait(30) and seen == ["this is an exception"]


def test_done_callback_with_cancel(make_executor):  # FutureTests.test_done_callback_with_cancel
    ex = make_executor(1)
    was_cancelled = []
    blocker = ex.submit(time.sleep, 0.3)
    f = ex.submit(mul, 1, 1)
    f.add_done_callback(lambda fut: was_cancelled.append(fut.cancelled()))
    assert f.cancel()
    assert was_cancelled == [True]
    blocker.result()


def test_done_callback_raises(make_executor, caplog):  # FutureTests.test_done_callback_raises
    ex = make_executor()
    raising_was_called = []
    fn_was_called = threading.Event()

    def raising_fn(callback_future):
        raising_was_called.append(True)
        raise Exception("doh!")

    f = ex.submit(mul, 1, 5)
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        f.add_done_callback(raising_fn)
        f.add_done_callback(lambda fut: fn_was_called.set())
        assert fn_was_called.wait(30)
    assert raising_was_called == [True]
    assert "doh!" in caplog.text


def test_done_callback_already_successful(make_executor, finished):
    # FutureTests.test_done_callback_already_successful
    callback_result = []
    finished["ok"].add_done_callback(lambda fut: callback_result.append(fut.result()))
    assert callback_result == [42]


def test_done_callback_already_failed(make_executor, finished):
    # FutureTests.test_done_callback_already_failed
    seen = []
    finished["bad"].add_done_callback(lambda fut: seen.append(type(fut.exception())))
    assert seen == [ZeroDivisionError]


def test_done_callback_already_cancelled(make_executor, finished):
    # FutureTests.test_done_callback_already_cancelled
    was_cancelled = []
    finished["cancelled"].add_done_callback(lambda fut: was_cancelled.append(fut.cancelled()))
    assert was_cancelled == [True]


def test_cancel(make_executor, kind, finished):  # FutureTests.test_cancel
    ex = make_executor(1)
    running = ex.submit(time.sleep, LONG)
    pending = ex.submit(mul, 1, 1)
    deadline = time.monotonic() + 30
    while not running.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pending.cancel() and pending.cancelled()
    assert finished["cancelled"].cancel()  # cancelling twice succeeds
    assert not finished["ok"].cancel() and not finished["bad"].cancel()
    if kind == "thread":
        assert not running.cancel()  # a running call cannot be cancelled
        running.result()
    else:
        # DIFFERENCE: cancel() on a running job stops it (README: "Coming from SageMaker")
        assert running.cancel() and running.cancelled()
        with pytest.raises(cf.CancelledError):
            running.result()


def test_running_and_done(make_executor):  # FutureTests.test_running / test_done
    ex = make_executor(1)
    f = ex.submit(time.sleep, 0.5)
    deadline = time.monotonic() + 30
    while not f.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f.running() and not f.done()
    f.result()
    assert f.done() and not f.running()


def test_result_with_timeout(make_executor):  # FutureTests.test_result_with_timeout
    ex = make_executor()
    f = ex.submit(time.sleep, 1.5 * TIMEOUT)  # ends after 1.5 timeouts: too late
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=TIMEOUT)
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0)


def test_result_with_success(make_executor):  # FutureTests.test_result_with_success
    ex = make_executor()
    f = ex.submit(sleep_and_return, 0.2, 42)
    assert f.result(timeout=30) == 42


def test_result_with_cancel(make_executor, finished):  # FutureTests.test_result_with_cancel
    with pytest.raises(cf.CancelledError):
        finished["cancelled"].result(timeout=5)
    with pytest.raises(cf.CancelledError):
        finished["cancelled"].exception(timeout=5)


def test_exception_with_timeout(make_executor):  # FutureTests.test_exception_with_timeout
    ex = make_executor()
    f = ex.submit(time.sleep, 1.5 * TIMEOUT)
    with pytest.raises(cf.TimeoutError):
        f.exception(timeout=TIMEOUT)


def test_exception_with_success(make_executor):  # FutureTests.test_exception_with_success
    ex = make_executor()
    f = ex.submit(sleep_and_raise, 0.2)
    exc = f.exception(timeout=30)
    assert isinstance(exc, Exception) and exc.args == ("this is an exception",)
    assert ex.submit(mul, 2, 3).exception(timeout=30) is None
