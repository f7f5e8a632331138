"""Warm path, one configuration: p50 of submit + result of a trivial job through a warm
worker, and the CPU time per job of the client and of its worker (from /proc).

For a same-minute A/B of two versions (these machines are noisy), interleave runs with
each version's sources first on the path:

    for r in 1 2 3; do for src in /path/to/old/src src; do
        PYTHONPATH=$src .venv/bin/python benchmarks/warm_ab.py 400; done; done
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def trivial(x=0):
    return x


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(n: int) -> None:
    folder = tempfile.mkdtemp(prefix="warm-ab-", dir=os.environ.get("WARM_AB_DIR"))
    os.environ["REMOTE_RUNTIME_S3_ROOT_URI"] = os.path.join(folder, "jobs")
    os.environ["XDG_CACHE_HOME"] = os.path.join(folder, "cache")
    from remote_runtime import RemoteExecutor
    from remote_runtime.backends.local import LocalBackend

    with RemoteExecutor(
        max_parallel_jobs=1, keep_alive_period_in_seconds=60, stream_logs=False
    ) as ex:
        for i in range(30):
            ex.submit(trivial, i).result()
        (worker,) = LocalBackend.shared().workers._all
        client0, worker0, times = _cpu(os.getpid()), _cpu(worker.popen.pid), []
        for i in range(n):
            t = time.perf_counter()
            ex.submit(trivial, i).result()
            times.append(time.perf_counter() - t)
        client, work = _cpu(os.getpid()) - client0, _cpu(worker.popen.pid) - worker0
    times.sort()
    print(
        f"p50 {times[n // 2] * 1e3:.2f} ms, client cpu {client / n * 1e3:.2f} ms/job, "
        f"worker cpu {work / n * 1e3:.2f} ms/job"
    )
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
