"""End-to-end run of benchmarks/bench_pareto.py at tiny scale: every series, the OptEmbed point,
the speed figures and the goals reach the JSON, and the README block renders from it."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_pareto.py"
SERIES = ("hash", "hash_threshold", "qr", "md", "unified")
GOALS = ("speed_vs_full", "all_at_least_0.9x_full_speed", "md_1_16_auc_gap_to_full", "md_1_16_within_0.002",
         "qr_minus_hash_auc", "qr_at_least_hash_everywhere", "md_1_4_and_1_16_differ")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_bench_pareto_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "pareto.json"
    tiny_search = ["embedding.population=4", "embedding.parents=2", "embedding.iterations=2", "embedding.search_batches=1"]
    cmd = [sys.executable, str(SCRIPT), "--rows", "20000", "--cardinality-scale", "0.01", "--budgets", "1/4,1/16",
           "--speed-steps", "3", "--speed-seconds", "0", "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
           *(arg for o in tiny_search for arg in ("--optembed-override", o))]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1450)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "expected duration:" in proc.stdout and "bench_pareto: test AUC" in proc.stdout

    result = json.loads(out.read_text())
    points = {(p["method"], p["budget"]): p for p in result["results"]}
    expected = {("full", 1.0), ("optembed", None)} | {(s, b) for s in SERIES for b in (0.25, 0.0625)}
    assert set(points) == expected
    full = points[("full", 1.0)]
    # full tables first in each of the 3 repeats and again after every 4 of the 11 other points
    assert result["full_every"] == 4 and full["samples_per_s"]["n"] == 3 * (1 + math.ceil((len(expected) - 1) / 4))
    for key, p in points.items():
        timing = p["samples_per_s"]
        assert key == ("full", 1.0) or timing["n"] == 3, key  # full tables' count: checked above
        assert 0 < timing["min"] <= timing["median"] <= timing["max"], key
        per_repeat = p["speed_vs_full_per_repeat"]
        assert len(per_repeat) == 3 and math.isclose(p["speed_vs_full"], sorted(per_repeat)[1]), key
        assert 0.5 < p["auc"] < 1 and p["full_bytes"] == full["bytes"], key
        if p["budget"] is not None and p["method"] != "full":
            assert p["bytes"] <= p["budget"] * full["bytes"] and p["bytes_vs_budget"] <= 1, key
    assert points[("hash_threshold", 0.25)]["setting"] == "threshold=20000"
    optembed = points[("optembed", None)]
    assert 0 < optembed["bytes_fraction"] < 1 and "kept" in optembed["knob"] and optembed["bytes_vs_budget"] is None
    for goal in GOALS:
        assert goal in result["goals"], goal
    assert set(result["goals"]["measured_hash_threshold_minus_hash_auc"]) == {"0.25", "0.0625"}
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "pareto_report.html").exists()
    report = json.loads((tmp_path / "pareto_report.json").read_text())
    assert report["problems"] == [] and len(report["runs"]) == len(expected)  # every point kept its predictions
    assert not list((tmp_path / "cache").rglob("checkpoints"))

    spec = importlib.util.spec_from_file_location("bench_readme", REPO / "benchmarks" / "readme.py")
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    block = readme.render_pareto(result)
    assert "| hash_threshold (threshold=20000) |" in block and "OptEmbed, at the size its search picks" in block
    assert "Goals: every compressed point >= 0.9x full samples/s" in block


def test_each_point_is_timed_against_the_full_table_runs_around_it(monkeypatch) -> None:
    """A machine whose speed drifts up run by run: full tables run first, after every
    ``--full-every`` points and last in each repeat, and a point's baseline is the mean of the
    two full-table runs around it (not the repeat's first)."""
    spec = importlib.util.spec_from_file_location("bench_pareto_for_test", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    calls: list[str] = []

    def short_run_rate(job, args) -> float:  # the n-th run of the sweep: the machine at 100 + n
        calls.append(job)
        return (100.0 + len(calls)) * (1.0 if job == "full" else 0.5)

    monkeypatch.setattr(bench, "short_run_rate", short_run_rate)
    runs = {(bench.FULL, 1.0): bench.EpochRun(0, "", {}, 0.0, 0.0, "full")}
    for i in range(5):
        runs[(bench.Series(f"p{i}", "hash"), 0.25)] = bench.EpochRun(0, "", {}, 0.0, 0.0, f"p{i}")
    args = bench.parse_args(["--json", "unused.json", "--full-every", "2"])
    rates, baselines = bench.measure_speed(runs, args)
    one_repeat = ["full", "p0", "p1", "full", "p2", "p3", "full", "p4", "full"]
    assert calls == one_repeat * 3
    full = rates[(bench.FULL, 1.0)]
    assert len(full) == 12 and full[:4] == [101.0, 104.0, 107.0, 109.0]
    p1 = (bench.Series("p1", "hash"), 0.25)
    assert rates[p1][0] == 0.5 * 103 and baselines[p1][0] == (101 + 104) / 2
    p4 = (bench.Series("p4", "hash"), 0.25)
    assert rates[p4][1] == 0.5 * 117 and baselines[p4][1] == (116 + 118) / 2
