"""benchmarks/report.py: the README's performance table from a results file, and
benchmarks/harness.py's targets (no benchmark is run here)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _module(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # (dataclasses look their module up)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


report = _module("report")
harness = _module("harness")

README = """# Project

Intro text.

## Performance

Some words.

<!-- bench:start -->
| old | table |
|---|---|
| stale | row |
<!-- bench:end -->

## Layout

More text.
"""

RESULTS = {
    "when": "2026-12-01T10:00:00+00:00",
    "python": "3.11.7",
    "machine": "x86_64, 2 cpus (Test CPU), Linux",
    "modules": ["bench_array", "bench_executor", "bench_remote"],
    "full_run": True,
    "overrides": {},
    "benchmarks": {
        "bench_array": {
            "np_save": {"seconds": 0.080, "label": "np.save", "rss_growth": 0},
            "rc_save": {
                "seconds": 0.100,
                "baseline": "np_save",
                "speed_ratio": 0.8,
                "label": "save a 512 MiB array (local folder)",
                "target": {"metric": "speed_ratio", "op": ">=", "value": 0.9, "text": ""},
                "ratio": 0.8,
                "met": False,
            },
            "unlabelled": {"seconds": 1.0, "baseline": "np_save", "speed_ratio": 0.08},
        },
        "bench_executor": {
            "process_pool_p50": {"seconds": 0.0002, "label": "`ProcessPoolExecutor`"},
            "remote_executor_warm_p50": {
                "seconds": 0.0009,
                "baseline": "process_pool_p50",
                "speed_ratio": 0.2222,
                "label": "warm job p50",
                "target": {"metric": "seconds", "op": "<=", "value": 0.001, "text": ""},
                "ratio": 0.0009,
                "met": True,
            },
            "ray_task_p50": {"seconds": float("nan"), "label": "a Ray task"},
            "remote_executor_vs_ray_p50": {
                "seconds": 0.0009,
                "baseline": "ray_task_p50",
                "speed_ratio": None,
                "label": "warm job p50 vs a Ray task",
            },
            "process_pool_throughput": {
                "seconds": 0.1,
                "count": 1000,
                "per_second": 10000.0,
                "label": "`ProcessPoolExecutor(2)`",
            },
            "remote_executor_throughput": {
                "seconds": 0.5,
                "count": 1000,
                "per_second": 2000.0,
                "baseline": "process_pool_throughput",
                "speed_ratio": 0.2,
                "label": "warm jobs per second",
                "target": {"metric": "per_second", "op": ">=", "value": 1500, "text": ""},
                "ratio": 2000.0,
                "met": True,
            },
        },
        "bench_remote": {
            "import_remote_runtime": {"seconds": 0.025, "label": "import"},
            "cold_call_module_function": {
                "seconds": 0.075,
                "baseline": "import_remote_runtime",
                "speed_ratio": 1 / 3,
                "time_ratio": 3.0,
                "label": "cold call",
                "target": {"metric": "time_ratio", "op": "<=", "value": 2.0, "text": ""},
                "ratio": 3.0,
                "met": False,
            },
        },
    },
}


def _run(tmp_path, results, readme=README, *args):
    (tmp_path / "latest.json").write_text(json.dumps(results))
    (tmp_path / "README.md").write_text(readme)
    argv = ["--results", str(tmp_path / "latest.json"), "--readme", str(tmp_path / "README.md")]
    return report.main([*argv, *args]), (tmp_path / "README.md").read_text()


def _table(text):
    inside = text.split("<!-- bench:start -->")[1].split("<!-- bench:end -->")[0]
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in inside.splitlines()
        if line.startswith("| ") and not line.startswith("| what")
    ]


def test_the_table_between_the_markers_holds_one_row_per_labelled_case(tmp_path):
    rc, text = _run(tmp_path, RESULTS)
    assert rc == 0
    rows = {row[0]: row for row in _table(text)}
    assert list(rows) == [
        "save a 512 MiB array (local folder)",
        "warm job p50",
        "warm job p50 vs a Ray task",
        "warm jobs per second",
        "cold call",
    ]
    assert rows["save a 512 MiB array (local folder)"] == [
        "save a 512 MiB array (local folder)",
        "100.0 ms",
        "np.save: 80.0 ms",
        "0.80x",
        ">= 0.90x",
        "**missed**",
    ]
    assert rows["warm job p50"][1:] == [
        "0.9 ms",
        "`ProcessPoolExecutor`: 0.2 ms",
        "0.22x",
        "<= 1.0 ms",
        "met",
    ]
    assert rows["warm job p50 vs a Ray task"][2:4] == ["a Ray task: n/a", "n/a"]
    assert rows["warm jobs per second"][1:] == [
        "2,000/s",
        "`ProcessPoolExecutor(2)`: 10,000/s",
        "0.20x",
        ">= 1,500/s",
        "met",
    ]
    assert rows["cold call"][3:] == ["3.00x the time", "<= 2.00x the time", "**missed**"]
    assert "2026-12-01" in text and "Test CPU" in text and "quick run" not in text


def test_nothing_outside_the_markers_changes(tmp_path):
    _, text = _run(tmp_path, RESULTS)
    before = README.partition("<!-- bench:start -->")[0]
    assert text.startswith(before + "<!-- bench:start -->\n")
    assert text.endswith("<!-- bench:end -->" + README.partition("<!-- bench:end -->")[2])
    assert "stale" not in text
    rc, again = _run(tmp_path, RESULTS, text)
    assert rc == 0 and again == text  # regenerating is stable


def test_a_quick_run_says_so(tmp_path):
    quick = {**RESULTS, "overrides": {"BENCH_ARRAY_BYTES": "67108864"}, "full_run": False}
    quick["modules"] = ["bench_array"]
    _, text = _run(tmp_path, quick)
    assert "BENCH_ARRAY_BYTES=67108864" in text and "Only bench_array ran" in text


def test_check_reports_a_stale_readme(tmp_path, capsys):
    rc, _ = _run(tmp_path, RESULTS, README, "--check")
    assert rc == 1
    _, text = _run(tmp_path, RESULTS)
    rc, _ = _run(tmp_path, RESULTS, text, "--check")
    assert rc == 0


@pytest.mark.parametrize(
    "readme",
    [
        "# no markers\n",
        "<!-- bench:end -->\nx\n<!-- bench:start -->\n",
        "<!-- bench:start -->\n<!-- bench:start -->\n<!-- bench:end -->\n",
    ],
)
def test_a_readme_without_one_pair_of_markers_is_refused(tmp_path, readme, capsys):
    rc, text = _run(tmp_path, RESULTS, readme)
    assert rc == 2 and text == readme
    assert "bench:start" in capsys.readouterr().err


def test_a_missing_results_file_is_explained(tmp_path, capsys):
    (tmp_path / "README.md").write_text(README)
    rc = report.main(
        ["--results", str(tmp_path / "nope.json"), "--readme", str(tmp_path / "README.md")]
    )
    assert rc == 2 and "make bench" in capsys.readouterr().err


def test_targets_judge_their_figure_in_their_direction():
    case = harness.Case("c", "g", baseline="b", payload_bytes=100, count=50)
    figs = harness.figures(case, seconds=0.5, rss_growth=100, base_seconds=0.25)
    assert figs["speed_ratio"] == 0.5 and figs["time_ratio"] == 2.0
    assert figs["per_second"] == 100.0 and figs["rss_over_payload"] == 1.0
    assert harness.at_least(0.5).met(figs["speed_ratio"]) is True
    assert harness.at_least(0.6).met(figs["speed_ratio"]) is False
    assert harness.at_most(2.0).met(figs["time_ratio"]) is True
    assert harness.at_most(1.9).met(figs["time_ratio"]) is False
    assert harness.at_least(100, "per_second").met(figs["per_second"]) is True
    assert harness.at_most(0.001, "seconds").met(math.nan) is None
    nan = harness.figures(case, seconds=0.5, rss_growth=0, base_seconds=math.nan)
    assert nan["speed_ratio"] is None
    with pytest.raises(ValueError, match="unknown target metric"):
        harness.Target(1.0, "speed")


def test_a_run_writes_target_ratio_and_met_per_row():
    run = _module("run")
    cases = {
        "base": harness.Case("base", "g"),
        "ours": harness.Case("ours", "g", baseline="base", target=harness.at_least(0.9)),
        "cold": harness.Case("cold", "g", baseline="base", target=harness.at_most(2.0)),
        "jobs": harness.Case("jobs", "g", count=300, target=harness.at_least(1500, "per_second")),
    }
    rows = {
        "base": {"seconds": 0.1, "rss_growth": 0, "runs": [{"seconds": 0.1}]},
        "ours": {"seconds": 0.125, "rss_growth": 0, "runs": [{"seconds": 0.125}]},
        "cold": {"seconds": 0.3, "rss_growth": 0, "runs": []},
        "jobs": {"seconds": 0.15, "rss_growth": 0, "runs": []},
    }
    table = run.table_lines(rows, cases)
    assert "target" not in table["base"]
    assert table["ours"]["ratio"] == pytest.approx(0.8) and table["ours"]["met"] is False
    assert table["ours"]["target"]["op"] == ">=" and table["ours"]["runs"] == [0.125]
    assert table["cold"]["ratio"] == pytest.approx(3.0) and table["cold"]["met"] is False
    assert table["jobs"]["ratio"] == pytest.approx(2000) and table["jobs"]["met"] is True
