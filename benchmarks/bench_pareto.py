"""Memory vs quality: every embedding method at budgets of 1, 1/4, 1/16 and 1/64 of the full tables.

On Kaggle-profile synthetic data (``--rows`` rows, full Kaggle cardinalities), trains the
classic Kaggle DLRM (dim 16) for one epoch per (method, budget) and evaluates it on the test
split. The budget counts the exact bytes of the embedding plan: table weights, the fused
optimizer's state (row-wise Adagrad: one float per row) and combiner weights (mixed-dimension
projections); the solver picks each method's size knob (hash/unified ``compression``, QR
``collisions``, MD ``alpha``) for the largest plan that fits. The baseline, full tables, is
trained in the same run, and the generator's Bayes-optimal AUC is the ceiling.

    python benchmarks/bench_pareto.py --rows 4000000 --json out.json

Goals checked and printed: mixed-dimension at 1/16 within 0.002 AUC of full tables;
compositional (QR) at least as good as the hashing trick at every budget; every compressed
model within 15% of the full model's training samples/s.

Every point is also scored with per-row predictions kept (``<cache dir>/<json stem>_runs/<method>@<budget>/eval``,
checkpoints removed), and ``recsys-report`` writes ``<json stem>_report.html`` beside the JSON over all of
them: the memory-vs-AUC Pareto front, and DeLong tests of each point against the full tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    add_synthetic_training_args,
    cached_synthetic_dataset,
    compose_train_job,
    format_table,
    save_result,
    start_benchmark,
    synthetic_job_overrides,
)

BUDGETS = (1.0, 1 / 4, 1 / 16, 1 / 64)
METHODS = ("hash", "qr", "md", "unified")


@dataclasses.dataclass
class Point:
    method: str
    budget: float
    bytes: int
    knob: str
    auc: float
    logloss: float
    bayes_auc: float
    bayes_logloss: float
    train_samples_per_s: float
    full_bytes: int = 0  # the full-table run's bytes, set once all points are in
    speed_vs_full: float = float("nan")


@dataclasses.dataclass
class ParetoResult:
    rows: int
    train_rows: int
    test_rows: int
    allocator: str
    results: list[Point]
    goals: dict
    plot: str


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synthetic_training_args(p)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--budgets", default=",".join(f"{b:g}" for b in BUDGETS), help="fractions, e.g. 1,1/4")
    return p.parse_args(argv)


def runs_dir(args: argparse.Namespace) -> Path:
    """Where the points' evaluated runs stay for the report (in the cache: predictions are large)."""
    return args.cache_dir / f"{args.json.stem}_runs"


def run_point(dataset: Path, method: str, budget: float, args: argparse.Namespace) -> Point:
    from recsys.embeddings.embedding_config import BUDGET_KNOBS
    from recsys.evaluation.config import EvalJobConfig
    from recsys.evaluation.offline import evaluate_checkpoint
    from recsys.evaluation.report import load_bayes
    from recsys.train.loop import train

    overrides = synthetic_job_overrides(
        dataset, args, f"embedding={method}", "trainer.eval_every_steps=0", "trainer.val_batches=5"
    )
    if method != "full":
        overrides.append(f"embedding.budget={budget!r}")
    job, _ = compose_train_job(overrides)
    run_dir = runs_dir(args) / f"{method}@{budget:g}"
    shutil.rmtree(run_dir, ignore_errors=True)
    result = train(job, run_dir)
    # the report's per-row predictions; then drop the checkpoints (GBs at full Kaggle cardinalities)
    evaluate_checkpoint(
        EvalJobConfig(checkpoint=str(run_dir), split=job.eval.split, batch_size=job.data.eval_batch_size,
                      max_batches=job.eval.max_batches, html_report=False),
        run_dir / "eval",
    )
    shutil.rmtree(run_dir / "checkpoints")
    bayes = load_bayes(dataset, job.eval.split)
    knob = BUDGET_KNOBS.get(method)
    knob_text = f"{knob}={result.embedding[knob]:.4g}" if knob else ""
    return Point(
        method=method,
        budget=budget,
        bytes=result.memory["total_bytes"],
        knob=knob_text,
        auc=result.eval["auc"],
        logloss=result.eval["logloss"],
        bayes_auc=bayes["bayes_auc"],
        bayes_logloss=bayes["bayes_logloss"],
        train_samples_per_s=result.train_samples_per_s,
    )


def check_goals(points: list[Point]) -> dict:
    full = next(p for p in points if p.method == "full")
    by = {(p.method, p.budget): p for p in points}
    goals: dict = {}
    md16 = by.get(("md", 1 / 16))
    if md16:
        goals["md_1_16_auc_gap_to_full"] = full.auc - md16.auc
        goals["md_1_16_within_0.002"] = full.auc - md16.auc <= 0.002
    qr_vs_hash = {
        f"{b:g}": by[("qr", b)].auc - by[("hash", b)].auc for (m, b) in by if m == "qr" and ("hash", b) in by
    }
    if qr_vs_hash:
        goals["qr_minus_hash_auc"] = qr_vs_hash
        goals["qr_at_least_hash_everywhere"] = all(v >= 0 for v in qr_vs_hash.values())
    speed = {f"{p.method}@{p.budget:g}": p.speed_vs_full for p in points if p.method != "full"}
    goals["speed_vs_full"] = speed
    goals["all_within_15pct_of_full_speed"] = all(v >= 0.85 for v in speed.values())
    return goals


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(p.method for p in points):
        pts = sorted((p for p in points if p.method == method), key=lambda p: p.bytes)
        ax.plot([p.bytes / 2**20 for p in pts], [p.auc for p in pts], marker="o", label=method)
    ax.axhline(points[0].bayes_auc, color="grey", linestyle="--", label="Bayes-optimal")
    ax.set_xscale("log")
    ax.set_xlabel("embedding bytes (weights + optimizer state + projections), MiB")
    ax.set_ylabel("test AUC")
    ax.set_title("DLRM on synthetic Criteo-Kaggle: memory vs AUC")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> ParetoResult:
    args = parse_args(argv)
    allocator = start_benchmark()
    from recsys.data.layout import DatasetMeta

    dataset = cached_synthetic_dataset(args.rows, args.seed, args.cache_dir, args.cardinality_scale)
    meta = DatasetMeta.load(dataset)
    budgets = [float(eval_fraction(b)) for b in args.budgets.split(",")]
    jobs = [("full", 1.0)] + [(m, b) for m in args.methods.split(",") for b in budgets]
    points: list[Point] = []
    for method, budget in jobs:
        point = run_point(dataset, method, budget, args)
        points.append(point)
        print(f"{method:8s} budget {budget:<8.4g} bytes {point.bytes:>14,} AUC {point.auc:.5f} "
              f"logloss {point.logloss:.5f} {point.train_samples_per_s:>8,.0f} samples/s {point.knob}", flush=True)
        gc.collect()
    full = points[0]  # the full-table baseline runs first
    for p in points:
        p.full_bytes = full.bytes
        p.speed_vs_full = p.train_samples_per_s / full.train_samples_per_s
    goals = check_goals(points)
    plot_path = args.json.with_suffix(".png")
    plot(points, plot_path)
    rows = [
        (f"{p.method} @ {p.budget:g}", p.auc,
         f"logloss {p.logloss:.5f}  bytes {p.bytes / p.full_bytes:.4f} of full  {p.train_samples_per_s:,.0f} samples/s "
         f"({p.speed_vs_full:.2f}x full)  {p.knob}")
        for p in points
    ]
    rows.append(("Bayes-optimal", points[0].bayes_auc, f"logloss {points[0].bayes_logloss:.5f}"))
    print(format_table(rows, title=f"bench_pareto: test AUC by method and budget ({meta.rows['train']:,} training rows)"))
    for key, value in goals.items():
        print(f"  {key}: {value}")
    out = ParetoResult(args.rows, meta.rows["train"], meta.rows["test"], allocator, points, goals, str(plot_path))
    save_result(args.json, out)
    print(f"wrote {args.json} and {plot_path}")
    report = args.json.with_name(args.json.stem + "_report.html")  # its numbers: <stem>_report.json
    subprocess.run([sys.executable, "-m", "recsys.cli.report", f"runs={runs_dir(args)}", f"output={report}",
                    "baseline=full@1"], check=True)
    return out


def eval_fraction(text: str) -> float:
    """``0.25`` or ``1/4``."""
    num, _, den = text.partition("/")
    return float(num) / float(den) if den else float(num)


if __name__ == "__main__":
    main()
