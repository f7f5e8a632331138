"""Cold @remote round trip vs `python -c "import remote_runtime"`, the subprocess floor,
and the overhead of a 100 MiB numpy argument vs writing it raw.

Targets (issues 4 and 14): a cold trivial call <= 2x the process time of importing
remote_runtime. Times are p50 over N calls in one process (BENCH_REMOTE_CALLS).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from harness import Case, at_most

N = int(os.environ.get("BENCH_REMOTE_CALLS", 15))
ARG_BYTES = 100 << 20

CASES = [
    Case("import_remote_runtime", "cold", repeat=1, label='`python -c "import remote_runtime"`'),
    Case(
        "cold_call_module_function",
        "cold",
        baseline="import_remote_runtime",
        repeat=1,
        target=at_most(2.0),
        label="cold `@remote` call (a module's function)",
    ),
    Case(
        "cold_call_main_function",
        "cold",
        baseline="import_remote_runtime",
        repeat=1,
        target=at_most(2.0),
        label="cold `@remote` call (a function of `__main__`)",
    ),
    Case("subprocess_unpickle_floor", "cold", baseline="import_remote_runtime", repeat=1),
    Case("raw_write_100mib", "argument", repeat=1),
    Case("array_argument_overhead_100mib", "argument", baseline="raw_write_100mib", repeat=1),
]


def trivial():
    return 1


def shape_of(a):
    return a.shape


def _p50(fn) -> float:
    fn()  # warm the client (imports, first job folder)
    times = []
    for _ in range(N):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _settings(workdir):
    os.environ["REMOTE_RUNTIME_S3_ROOT_URI"] = os.path.join(workdir, "jobs")
    os.environ["XDG_CACHE_HOME"] = os.path.join(workdir, "cache")


def import_remote_runtime(workdir, timer):
    timer.start()
    return _p50(lambda: subprocess.run([sys.executable, "-c", "import remote_runtime"], check=True))


def cold_call_module_function(workdir, timer):
    _settings(workdir)
    from remote_runtime import remote

    f = remote(stream_logs=False)(trivial)
    timer.start()
    return _p50(f)


def cold_call_main_function(workdir, timer):
    _settings(workdir)
    from remote_runtime import remote

    def local_trivial():  # travels by value, as a function defined in a script does
        return 1

    f = remote(stream_logs=False)(local_trivial)
    timer.start()
    return _p50(f)


def subprocess_unpickle_floor(workdir, timer):
    import cloudpickle

    def local_trivial():
        return 1

    path = os.path.join(workdir, "fn.pkl")
    with open(path, "wb") as fh:
        fh.write(cloudpickle.dumps(local_trivial))
    script = f"import pickle; pickle.load(open({path!r}, 'rb'))()"
    timer.start()
    return _p50(lambda: subprocess.run([sys.executable, "-c", script], check=True))


def raw_write_100mib(workdir, timer):
    import numpy as np

    a = np.ones(ARG_BYTES // 8)
    path = os.path.join(workdir, "raw.npy")
    timer.start()
    return _p50(lambda: np.save(path, a))


def array_argument_overhead_100mib(workdir, timer):
    import numpy as np

    _settings(workdir)
    from remote_runtime import remote

    a = np.ones(ARG_BYTES // 8)
    f = remote(stream_logs=False)(shape_of)
    g = remote(stream_logs=False)(trivial)
    timer.start()
    return max(1e-6, _p50(lambda: f(a)) - _p50(g))
