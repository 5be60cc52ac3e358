"""Fold ``scripts/gpu_check.sh``'s recsys-train runs into a GPU benchmark's result.

    python benchmarks/gpu_train_summary.py RUNS.jsonl --into benchmarks/results/scale_gpu.json
    python benchmarks/gpu_train_summary.py RUNS.jsonl --into benchmarks/results/kernels_gpu.json --group-runs train_full train_md

RUNS.jsonl holds one line per ``recsys-train`` run on the GPU (run name ``NAME_REPEAT``, samples/s
from its report, test AUC, tier, hit rate), the configurations interleaved. Without ``--group-runs``
the result (bench_scale's, under ``gpu``) gains ``train_cli``: per tier, samples/s as median, min,
max over its runs, the hit rate and the test AUCs, and the ratio of the medians against tables in
device memory. With ``--group-runs`` (the first is the baseline) the runs of those names are grouped by
name instead, into ``train_cli`` at the top level, each with ``vs_baseline``.
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


def summarise_runs(lines: list[dict], names: list[str]) -> dict:
    groups = {name: [line for line in lines if line["run"].rsplit("_", 1)[0] == name] for name in names}
    empty = [name for name, runs in groups.items() if not runs]
    if empty:
        raise ValueError(f"no runs named {empty}")
    out = {"steps": lines[0]["steps"], "runs": {}}
    for name, runs in groups.items():
        out["runs"][name] = {"samples_per_s": vars(Timing.of([r["samples_per_s"] for r in runs])),
                             "test_auc": [r["test_auc"] for r in runs]}
    base = out["runs"][names[0]]["samples_per_s"]["median"]
    for entry in out["runs"].values():
        entry["vs_baseline"] = entry["samples_per_s"]["median"] / base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", help="gpu_check.sh's train_runs.jsonl")
    parser.add_argument("--into", required=True, help="the GPU result JSON to add train_cli to")
    parser.add_argument("--group-runs", nargs="+", help="group these run names (the first is the baseline) instead of tiers")
    args = parser.parse_args()
    lines = [json.loads(line) for line in Path(args.runs).read_text().splitlines() if line.strip()]
    if not lines:
        sys.exit(f"{args.runs}: no runs")
    result = json.loads(Path(args.into).read_text())
    if args.group_runs:
        result["train_cli"] = summarise_runs(lines, args.group_runs)
    else:
        result["gpu"]["train_cli"] = summarise(lines)
    Path(args.into).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
