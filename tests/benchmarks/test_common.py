"""The helpers every benchmark shares (benchmarks/common.py), and the JSON the README reads."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module


def test_timing_summarises_repeats_as_median_min_max_count():
    common = load("common")
    t = common.Timing.of([3.0, 1.0, 10.0, 2.0])
    assert dataclasses.asdict(t) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    with pytest.raises(ValueError, match="at least one"):
        common.Timing.of([])


@pytest.mark.slow
def test_bench_report_writes_the_timings_the_readme_reads(tmp_path):
    out = tmp_path / "report.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_report.py"), "--runs", "2", "--rows", "2000",
           "--repeats", "2", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    for key in ("baseline_global_metrics_s", "report_one_run_s", "report_all_runs_s"):
        t = result[key]
        assert t["n"] == 2 and 0 < t["min"] <= t["median"] <= t["max"], (key, t)
    assert result["report_vs_baseline"] == pytest.approx(
        result["report_all_runs_s"]["median"] / result["baseline_global_metrics_s"]["median"])
    sentence = load("readme").render_report(result)
    assert "a report over 2 runs of 2,000 test rows" in sentence
    assert f"median {result['report_all_runs_s']['median']:.0f} s" in sentence
