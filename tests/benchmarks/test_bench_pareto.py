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
    for key, p in points.items():
        timing = p["samples_per_s"]
        assert timing["n"] == 3 and 0 < timing["min"] <= timing["median"] <= timing["max"], key
        assert len(p["speed_vs_full_per_repeat"]) == 3 and math.isclose(
            p["speed_vs_full"], timing["median"] / full["samples_per_s"]["median"]), key
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
