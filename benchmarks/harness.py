"""Benchmark harness: every case runs in a fresh subprocess, which reports its wall time
and its peak RSS growth; ``run.py`` collects the cases of every ``bench_*.py`` module,
prints a table with ratios against each case's baseline and writes results/latest.json.

A benchmark module defines ``CASES``: a list of :class:`Case`, and for each case a
function ``name(workdir, timer)`` run in the subprocess. It may do untimed setup
before calling ``timer.start()``; the harness measures from there to the return, unless
the function returns a float: the seconds it measured itself (a p50 over many calls).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Case:
    name: str  # the function to run in the subprocess
    group: str  # cases of one group are compared with each other
    baseline: str | None = None  # name of the case this one is compared with (None: is a baseline)
    payload_bytes: int = 0
    repeat: int = 5
    extra: dict[str, Any] = field(default_factory=dict)


class Timer:
    """Given to a case function: call ``start()`` after setup, ``mark_rss()`` right before."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.rss0 = 0

    def start(self) -> None:
        os.sync()  # earlier cases' dirty pages must not be flushed on our time
        _reset_peak()
        self.rss0 = _status("VmRSS")
        self.t0 = time.perf_counter()


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    """Reset the peak RSS (VmHWM), which a child inherits from its parent across fork+exec."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def child_main(module_name: str, case: str, workdir: str) -> None:
    """Entry point inside the subprocess: run one case, print one JSON line."""
    sys.path.insert(0, HERE)
    module = __import__(module_name)
    timer = Timer()
    reported = getattr(module, case)(workdir, timer)
    elapsed = time.perf_counter() - (timer.t0 if timer.t0 is not None else time.perf_counter())
    if isinstance(reported, float):  # the case measured itself (e.g. a p50 over many calls)
        elapsed = reported
    print(json.dumps({"seconds": elapsed, "rss_growth": max(0, _status("VmHWM") - timer.rss0)}))


def run_case(
    module_name: str, case: Case, workdir: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    runs = []
    for _ in range(case.repeat):
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "harness.py"), module_name, case.name, workdir],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{module_name}.{case.name} failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    seconds = sorted(r["seconds"] for r in runs)[len(runs) // 2]
    rss = max(r["rss_growth"] for r in runs)
    return {"seconds": seconds, "rss_growth": rss, "runs": runs}


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2], sys.argv[3])
