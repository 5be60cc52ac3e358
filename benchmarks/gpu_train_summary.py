"""Fold ``scripts/gpu_check.sh``'s recsys-train runs into bench_scale's GPU result.

    python benchmarks/gpu_train_summary.py RUNS.jsonl --into benchmarks/results/scale_gpu.json

RUNS.jsonl holds one line per ``recsys-train`` run on the GPU (run name, samples/s from its
report, test AUC, tier, hit rate), the placements interleaved. The result gains ``train_cli``:
per tier, samples/s as median, min, max over its runs, the hit rate and the test AUCs, and the
ratio of the medians against tables in device memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timing  # noqa: E402


def summarise(lines: list[dict]) -> dict:
    tiers: dict[str, list[dict]] = {}
    for line in lines:
        tiers.setdefault(line["tier"], []).append(line)
    if "device" not in tiers:
        raise ValueError("the runs hold no run with tables in device memory to compare against")
    out = {"steps": lines[0]["steps"], "tiers": {}}
    for tier, runs in tiers.items():
        rates = Timing.of([r["samples_per_s"] for r in runs])
        out["tiers"][tier] = {"samples_per_s": vars(rates), "hit_rate": runs[-1]["hit_rate"],
                              "test_auc": [r["test_auc"] for r in runs]}
    base = out["tiers"]["device"]["samples_per_s"]["median"]
    for entry in out["tiers"].values():
        entry["vs_device"] = entry["samples_per_s"]["median"] / base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", help="gpu_check.sh's train_runs.jsonl")
    parser.add_argument("--into", required=True, help="bench_scale's GPU result JSON to add train_cli to")
    args = parser.parse_args()
    lines = [json.loads(line) for line in Path(args.runs).read_text().splitlines() if line.strip()]
    if not lines:
        sys.exit(f"{args.runs}: no runs")
    result = json.loads(Path(args.into).read_text())
    result["gpu"]["train_cli"] = summarise(lines)
    Path(args.into).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
