"""Benchmark harness: every case runs in a fresh subprocess, which reports its wall time
and its peak RSS growth; ``run.py`` collects the cases of every ``bench_*.py`` module,
prints a table with ratios against each case's baseline and writes results/latest.json.

A benchmark module defines ``CASES``: a list of :class:`Case`, and for each case a
function ``name(workdir, timer)`` run in the subprocess. It may do untimed setup
before calling ``timer.start()``; the harness measures from there to the return, unless
the function returns a float: the seconds it measured itself (a p50 over many calls).

A case may carry a :class:`Target` (``Case(..., target=at_least(0.9))``): the figure it
is judged on (``speed_ratio``: the baseline's time over ours, higher is better;
``time_ratio``: ours over the baseline's, lower is better; ``seconds``; ``per_second``:
``count`` items over the time; ``rss_over_payload``), the bound and its direction.
``run.py`` prints met or missed per row and writes ``target``, ``ratio`` (the figure the
target is about) and ``met`` into results/latest.json. A case with a ``label`` is a row
of the README's performance table (``report.py``).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


METRICS = ("speed_ratio", "time_ratio", "seconds", "per_second", "rss_over_payload")


@dataclass(frozen=True)
class Target:
    """A bound on one figure of a case: ``metric`` must be ``>= value`` (``at_least``) or
    ``<= value``."""

    value: float
    metric: str = "speed_ratio"
    at_least: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown target metric {self.metric!r}; one of {METRICS}")

    @property
    def op(self) -> str:
        return ">=" if self.at_least else "<="

    def met(self, figure: float | None) -> bool | None:
        """Whether ``figure`` meets the bound; None when it was not measured (NaN, None)."""
        if figure is None or math.isnan(figure):
            return None
        return figure >= self.value if self.at_least else figure <= self.value

    def describe(self, baseline: str | None = None) -> str:
        return f"{self.op} {format_figure(self.metric, self.value, baseline)}"

    def as_json(self, baseline: str | None = None) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "op": self.op,
            "value": self.value,
            "text": self.describe(baseline),
        }


def at_least(value: float, metric: str = "speed_ratio") -> Target:
    return Target(value, metric, at_least=True)


def at_most(value: float, metric: str = "time_ratio") -> Target:
    return Target(value, metric, at_least=False)


def format_figure(metric: str, value: float | None, baseline: str | None = None) -> str:
    """A figure as the tables show it: ``0.72x np_save``, ``3.2 ms``, ``1,500/s``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    of = f" {baseline}" if baseline else ""
    if metric == "speed_ratio":
        return f"{value:.2f}x{of}"
    if metric == "time_ratio":
        return f"{value:.2f}x the time of{of}" if baseline else f"{value:.2f}x the time"
    if metric == "seconds":
        return f"{value * 1000:,.1f} ms" if value < 10 else f"{value:,.1f} s"
    if metric == "per_second":
        return f"{value:,.0f}/s"
    return f"{value:.2f}x the payload"


@dataclass
class Case:
    name: str  # the function to run in the subprocess
    group: str  # cases of one group are compared with each other
    baseline: str | None = None  # name of the case this one is compared with (None: is a baseline)
    payload_bytes: int = 0
    repeat: int = 5
    extra: dict[str, Any] = field(default_factory=dict)
    target: Target | None = None  # the bound this case is judged on (met / missed)
    label: str | None = None  # the row's text in the README's performance table
    count: int = 0  # items the case processes (jobs): reported per second when > 0


def figures(
    case: Case, seconds: float, rss_growth: int, base_seconds: float | None
) -> dict[str, Any]:
    """Every figure of a measured case (those that apply): the target metrics by name."""
    out: dict[str, Any] = {"seconds": seconds}
    if base_seconds is not None:
        ok = seconds and not math.isnan(seconds) and not math.isnan(base_seconds)
        out["speed_ratio"] = base_seconds / seconds if ok else None
        out["time_ratio"] = seconds / base_seconds if ok and base_seconds else None
    if case.count:
        out["per_second"] = case.count / seconds if seconds and not math.isnan(seconds) else None
    out["rss_over_payload"] = rss_growth / case.payload_bytes if case.payload_bytes else None
    return out


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


def fresh(path):
    """Remove what an earlier repeat wrote at ``path`` (before the timer starts)."""
    import shutil

    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    return path
