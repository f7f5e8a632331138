"""Warm job round trip: RemoteExecutor (warm workers) vs ProcessPoolExecutor vs a Ray task;
throughput of 1,000 trivial jobs with max_parallel_jobs=2.

Targets (issue 14): warm p50 <= 1.0 ms and >= 1,500 warm jobs per second with
max_parallel_jobs=2, while every job stays durable in its folder. Ray is measured when
it is installed (make test installs it). BENCH_EXECUTOR_CALLS, BENCH_EXECUTOR_JOBS and
BENCH_EXECUTOR_LEAK_JOBS shrink the work for a quick run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from harness import Case, at_least, at_most

N = int(os.environ.get("BENCH_EXECUTOR_CALLS", 200))
THROUGHPUT_JOBS = int(os.environ.get("BENCH_EXECUTOR_JOBS", 1000))
LEAK_JOBS = int(os.environ.get("BENCH_EXECUTOR_LEAK_JOBS", 10_000))

CASES = [
    Case("process_pool_p50", "warm round trip", repeat=1, label="`ProcessPoolExecutor`"),
    Case(
        "remote_executor_warm_p50",
        "warm round trip",
        baseline="process_pool_p50",
        repeat=1,
        target=at_most(0.001, "seconds"),
        label="warm job p50 (keep-alive, trivial function), every job durable in its folder",
    ),
    Case("ray_task_p50", "warm round trip", repeat=1, label="a Ray task"),
    Case(
        "remote_executor_vs_ray_p50",
        "warm round trip",
        baseline="ray_task_p50",
        repeat=1,
        label="warm job p50 vs a Ray task",
    ),
    Case(
        "process_pool_throughput",
        "throughput",
        repeat=1,
        count=THROUGHPUT_JOBS,
        label="`ProcessPoolExecutor(2)`",
    ),
    Case(
        "remote_executor_throughput",
        "throughput",
        baseline="process_pool_throughput",
        repeat=1,
        count=THROUGHPUT_JOBS,
        target=at_least(1500, "per_second"),
        label="warm jobs per second, `max_parallel_jobs=2`",
    ),
    Case("remote_executor_10000_jobs_no_leaks", "leaks", repeat=1, count=LEAK_JOBS),
]


def trivial(x=0):
    return x


def _p50(call) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(N):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _env(workdir):
    os.environ["REMOTE_RUNTIME_S3_ROOT_URI"] = os.path.join(workdir, "jobs")
    os.environ["XDG_CACHE_HOME"] = os.path.join(workdir, "cache")


def process_pool_p50(workdir, timer):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as ex:
        timer.start()
        return _p50(lambda: ex.submit(trivial).result())


def remote_executor_warm_p50(workdir, timer):
    _env(workdir)
    from remote_runtime import RemoteExecutor

    with RemoteExecutor(
        max_parallel_jobs=1, keep_alive_period_in_seconds=60, stream_logs=False
    ) as ex:
        timer.start()
        return _p50(lambda: ex.submit(trivial).result())


remote_executor_vs_ray_p50 = remote_executor_warm_p50


def ray_task_p50(workdir, timer):
    try:
        import ray
    except ImportError:
        return float("nan")
    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    remote_trivial = ray.remote(trivial)
    timer.start()
    try:
        return _p50(lambda: ray.get(remote_trivial.remote()))
    finally:
        ray.shutdown()


def process_pool_throughput(workdir, timer):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as ex:
        list(ex.map(trivial, range(10)))
        timer.start()
        list(ex.map(trivial, range(THROUGHPUT_JOBS)))


def remote_executor_throughput(workdir, timer):
    _env(workdir)
    from remote_runtime import RemoteExecutor

    with RemoteExecutor(
        max_parallel_jobs=2, keep_alive_period_in_seconds=60, stream_logs=False
    ) as ex:
        list(ex.map(trivial, range(10)))
        timer.start()
        list(ex.map(trivial, range(THROUGHPUT_JOBS)))


def remote_executor_10000_jobs_no_leaks(workdir, timer):
    """10,000 trivial jobs through one executor (warm workers that expire after 1 s),
    then no process, thread or open file of ours may be left: fails loudly otherwise."""
    import threading

    _env(workdir)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from remote_runtime import RemoteExecutor
    from servers import live_children

    threads, fds, children = (
        threading.active_count(),
        len(os.listdir("/proc/self/fd")),
        live_children(),
    )
    timer.start()
    with RemoteExecutor(
        max_parallel_jobs=2, keep_alive_period_in_seconds=1, stream_logs=False
    ) as ex:
        assert sum(ex.map(trivial, range(LEAK_JOBS))) == sum(range(LEAK_JOBS))
    elapsed = time.perf_counter() - timer.t0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        threading.active_count() > threads
        or live_children() - children
        or len(os.listdir("/proc/self/fd")) > fds
    ):
        time.sleep(0.1)
    leaked = (
        threading.active_count() - threads,
        len(live_children() - children),
        len(os.listdir("/proc/self/fd")) - fds,
    )
    if any(n > 0 for n in leaked):
        raise AssertionError(
            f"left behind after {LEAK_JOBS} jobs: threads, processes, fds = {leaked}"
        )
    return elapsed
