"""End-to-end smoke test of benchmarks/bench_scale.py with tiny settings: both sections (1 process
against 2 sharded gloo ranks; cold tails on disk against RAM) run, print their table and write
every figure the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_scale.py"


@pytest.mark.slow
def test_bench_scale_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    cmd = [sys.executable, str(SCRIPT), "--sections", "disk_tier", "sharding", "--cardinality-scale", "0.0005",
           "--batch", "128", "--steps", "2", "--repeats", "3", "--warmup", "1", "--disk-scale", "0.0002",
           "--disk-dim", "16", "--disk-dir", str(tmp_path), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "sharded / single" in proc.stdout and "disk / RAM" in proc.stdout  # the printed table
    result = json.loads(out.read_text())
    assert result["sharded_world_size"] == 2 and result["sharding_types"] == ["table_wise", "row_wise"]
    for key in ("single_samples_per_s", "sharded_samples_per_s", "ratio", "table_rows"):
        assert result[key] > 0, key
    assert result["single_min_max"][0] <= result["single_samples_per_s"] <= result["single_min_max"][1]
    tier = result["disk_tier"]
    for key in ("table_bytes", "ram_bytes", "peak_rss_bytes", "samples_per_s", "in_ram_samples_per_s", "disk_bytes"):
        assert tier[key] > 0, key
    assert tier["in_ram_table_bytes"] < tier["table_bytes"]  # the comparison model is scaled down
    assert 0 < tier["hit_rate"] < 1
    assert tier["read_ahead_batches"] == {"pipelined": 6, "synchronous": 1}  # 1 + 2 x 3 steps: all but the first read ahead
    assert tier["cold_pages_per_step"] > 0 and len(tier["disk_random_reads_per_s"]) == 2  # the disk probed before and after
    assert all(rate > 0 for rate in tier["disk_random_reads_per_s"]) and tier["disk_bound_samples_per_s"] > 0
    assert "disk random reads/s" in proc.stdout


def test_gpu_train_runs_fold_into_the_gpu_result(tmp_path):
    """gpu_check.sh's recsys-train lines become per-tier medians beside bench_scale's GPU figures."""
    repo = Path(__file__).resolve().parents[2]
    runs = tmp_path / "train_runs.jsonl"
    lines = [("device", 200.0, None), ("uvm_cache", 150.0, 0.7), ("device", 220.0, None), ("uvm_cache", 165.0, 0.7),
             ("device", 100.0, None), ("uvm_cache", 120.0, 0.7)]
    runs.write_text("".join(json.dumps({"run": f"r{i}", "samples_per_s": rate, "steps": 300, "test_auc": 0.75, "tier": tier,
                                        "hit_rate": hit}) + "\n" for i, (tier, rate, hit) in enumerate(lines)))
    result = tmp_path / "scale_gpu.json"
    result.write_text(json.dumps({"gpu": {"batches": []}}))
    subprocess.run([sys.executable, str(repo / "benchmarks" / "gpu_train_summary.py"), str(runs), "--into", str(result)], check=True)
    tiers = json.loads(result.read_text())["gpu"]["train_cli"]["tiers"]
    assert tiers["device"]["samples_per_s"] == {"median": 200.0, "min": 100.0, "max": 220.0, "n": 3}
    assert tiers["uvm_cache"]["vs_device"] == pytest.approx(150.0 / 200.0)
    assert tiers["uvm_cache"]["hit_rate"] == 0.7


def test_gpu_train_runs_group_by_name_against_the_first(tmp_path):
    """bench_kernels_gpu's recsys-train runs (full, then md, interleaved) grouped by run name."""
    runs = tmp_path / "kernels_runs.jsonl"
    lines = [("train_full_1", 200.0), ("train_md_1", 190.0), ("train_full_2", 210.0), ("train_md_2", 150.0),
             ("train_full_3", 100.0), ("train_md_3", 180.0)]
    runs.write_text("".join(json.dumps({"run": run, "samples_per_s": rate, "steps": 300, "test_auc": 0.75, "tier": "device",
                                        "hit_rate": None}) + "\n" for run, rate in lines))
    result = tmp_path / "kernels_gpu.json"
    result.write_text(json.dumps({"step": []}))
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_train_summary.py"), str(runs), "--into", str(result),
                    "--group-runs", "train_full", "train_md"], check=True)
    grouped = json.loads(result.read_text())["train_cli"]["runs"]
    assert grouped["train_full"]["samples_per_s"] == {"median": 200.0, "min": 100.0, "max": 210.0, "n": 3}
    assert grouped["train_md"]["vs_baseline"] == pytest.approx(180.0 / 200.0)
