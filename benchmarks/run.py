"""Run every benchmark (or those named on the command line), print ratios, save JSON.

python benchmarks/run.py                # all bench_*.py modules
python benchmarks/run.py bench_array    # one module

Every row prints its ratio against its baseline and, where the case has a target, the
figure the target is about and whether it is met; results/latest.json keeps them all
(``target``, ``ratio``, ``met`` per row). A full run (no module named, no BENCH_* size
override) also regenerates the README's performance table (``report.py``).
"""

from __future__ import annotations

import datetime
import glob
import importlib
import json
import os
import platform
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import figures, format_figure, run_case  # noqa: E402


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cpus ({_cpu_model()}), {platform.system()}"


def overrides() -> dict[str, str]:
    """The BENCH_* settings of this run (sizes, call counts): a quick run, not the figures."""
    return {
        k: v for k, v in sorted(os.environ.items()) if k.startswith("BENCH_") and k != "BENCH_TMP"
    }


def table_lines(
    rows: dict[str, dict[str, Any]], cases: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The JSON rows of one module from its measured cases."""
    table: dict[str, dict[str, Any]] = {}
    for case_name, row in rows.items():
        case = cases[case_name]
        base = rows[case.baseline]["seconds"] if case.baseline else None
        figs = figures(case, row["seconds"], row["rss_growth"], base)
        line: dict[str, Any] = {"group": case.group, "rss_growth": row["rss_growth"], **figs}
        line["runs"] = [r["seconds"] for r in row.get("runs", ())]  # the spread of repeats
        if case.baseline:
            line["baseline"] = case.baseline
            line["baseline_seconds"] = base
        if case.count:
            line["count"] = case.count
        if case.label:
            line["label"] = case.label
        if case.target is not None:
            ratio = figs.get(case.target.metric)
            line["target"] = case.target.as_json(case.baseline)
            line["ratio"] = ratio
            line["met"] = case.target.met(ratio)
        line.update(case.extra)
        table[case_name] = line
    return table


def _target(line: dict[str, Any]) -> str:
    target = line["target"]
    return f"{target['op']} {format_figure(target['metric'], target['value'])}"


def print_table(table: dict[str, dict[str, Any]]) -> None:
    print(f"{'case':<36}{'time':>11}{'vs baseline':>40}{'peak RSS':>10}{'/payload':>9}  target")
    for name, line in table.items():
        ratio_txt = ""
        if "baseline" in line:
            ratio_txt = format_figure("speed_ratio", line.get("speed_ratio"), line["baseline"])
        if line.get("per_second") is not None:
            ratio_txt = f"{format_figure('per_second', line['per_second'])}; {ratio_txt}".strip(
                "; "
            )
        rss = line.get("rss_over_payload")
        target_txt = ""
        if "target" in line:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[line["met"]]
            figure = format_figure(line["target"]["metric"], line["ratio"], line.get("baseline"))
            target_txt = f"{verdict}: {figure} (target {_target(line)})"
        print(
            f"{name:<36}{format_figure('seconds', line['seconds']):>11}{ratio_txt:>40}"
            f"{_fmt_bytes(line['rss_growth']):>10}{(f'{rss:.2f}' if rss is not None else ''):>9}"
            f"  {target_txt}"
        )


def work_base() -> str:
    """Where each module's working folder (its job roots, its files) is made: BENCH_TMP,
    else beside the default job root (~/.remote-runtime), on the filesystem where jobs go
    by default, not in /tmp. What creating a file costs depends on what was deleted near
    it: on ext4 without a journal (these VMs) a creation checks the inodes freed recently
    in its block group (``perf``: ``recently_deleted`` under ``__ext4_new_inode``), and
    a creation in a /tmp where test suites delete thousands of files measured 0.3-0.5 ms,
    against 0.016 ms in an untouched folder of the same disk. Each module prints what a
    creation costs in its folder (``file_creation_us`` in latest.json)."""
    base = os.environ.get("BENCH_TMP") or os.path.join(
        os.path.expanduser("~"), ".remote-runtime", "benchmarks"
    )
    os.makedirs(base, exist_ok=True)
    return base


def file_creation_us(folder: str, n: int = 200) -> float:
    """Microseconds to create, write and close a small file in ``folder`` now (median of
    ``n``): what the disk charges each file a job writes, printed with every module."""
    import statistics
    import time

    probe = tempfile.mkdtemp(prefix=".probe-", dir=folder)
    times = []
    for i in range(n):
        t = time.perf_counter()
        fd = os.open(os.path.join(probe, str(i)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 512)
        os.close(fd)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main(argv: list[str]) -> int:
    names = argv or sorted(
        os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "bench_*.py"))
    )
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": machine(),
        "work_folder": work_base(),
        "modules": names,
        "full_run": not argv,
        "overrides": overrides(),
        "benchmarks": {},
    }
    for name in names:
        module = importlib.import_module(name)
        print(f"\n== {name}: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}")
        rows = {}
        with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=work_base()) as workdir:
            create_us = file_creation_us(workdir)
            print(f"(work folder {workdir}: creating a file there costs {create_us:.0f} us)")
            results.setdefault("file_creation_us", {})[name] = round(create_us, 1)
            if hasattr(module, "setup"):
                module.setup(workdir)
            try:
                for case in module.CASES:
                    rows[case.name] = run_case(name, case, workdir, getattr(module, "ENV", None))
            finally:
                if hasattr(module, "teardown"):
                    module.teardown(workdir)
        table = table_lines(rows, {c.name: c for c in module.CASES})
        print_table(table)
        results["benchmarks"][name] = table
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "latest.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {out}")
    targeted = [
        (f"{m}.{n}", line)
        for m, t in results["benchmarks"].items()
        for n, line in t.items()
        if "target" in line
    ]
    if targeted:
        print("\ntargets:")
        for name, line in targeted:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[line["met"]]
            figure = format_figure(line["target"]["metric"], line["ratio"], line.get("baseline"))
            print(f"  {verdict:<13}{name:<52}{figure} (target {_target(line)})")
    if results["full_run"] and not results["overrides"]:
        import report

        report.main([])
    else:
        print("(not a full run at full size: README left as it is; `make bench-report` writes it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
