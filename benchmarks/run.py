"""Run every benchmark (or those named on the command line), print ratios, save JSON.

python benchmarks/run.py                # all bench_*.py modules
python benchmarks/run.py bench_array    # one module
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import run_case  # noqa: E402


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv: list[str]) -> int:
    names = argv or sorted(
        os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "bench_*.py"))
    )
    results: dict[str, object] = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "benchmarks": {},
    }
    for name in names:
        module = importlib.import_module(name)
        print(f"\n== {name}: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}")
        rows = {}
        with tempfile.TemporaryDirectory(
            prefix=f"{name}-", dir=os.environ.get("BENCH_TMP")
        ) as workdir:
            if hasattr(module, "setup"):
                module.setup(workdir)
            try:
                for case in module.CASES:
                    rows[case.name] = {
                        **run_case(name, case, workdir, getattr(module, "ENV", None)),
                        "case": case,
                    }
            finally:
                if hasattr(module, "teardown"):
                    module.teardown(workdir)
        print(f"{'case':<34}{'time':>10}{'vs baseline':>26}{'peak RSS growth':>18}{'/payload':>10}")
        table = {}
        for case_name, row in rows.items():
            case = row.pop("case")
            line = {"group": case.group, "seconds": row["seconds"], "rss_growth": row["rss_growth"]}
            ratio_txt = ""
            if case.baseline:
                base = rows[case.baseline]["seconds"]
                line["baseline"] = case.baseline
                line["speed_ratio"] = base / row["seconds"] if row["seconds"] else None
                ratio_txt = f"{line['speed_ratio']:.2f}x of {case.baseline}"
            rss_ratio = row["rss_growth"] / case.payload_bytes if case.payload_bytes else None
            line["rss_over_payload"] = rss_ratio
            line.update(case.extra)
            table[case_name] = line
            print(
                f"{case_name:<34}{row['seconds'] * 1000:>8.1f}ms{ratio_txt:>26}"
                f"{_fmt_bytes(row['rss_growth']):>18}{(f'{rss_ratio:.2f}' if rss_ratio is not None else ''):>10}"
            )
        results["benchmarks"][name] = table  # type: ignore[index]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "latest.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
