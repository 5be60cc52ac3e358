"""Report build time: one HTML report over ``--runs`` evaluated runs of ``--rows`` test rows each.

Lays out a synthetic prepared test split (26 skewed sparse features with vocabulary counts and
an OOV row, planted labels) and ``--runs`` evaluated runs on it (``eval.json``,
``predictions.parquet``, ``metrics.jsonl``), each model a different blur of the planted logit.
Then times, ``--repeats`` times each:

- the baseline: what evaluation computed before reports existed, the global metrics of every
  run (``CTRMetrics`` from its predictions file);
- ``build_report`` over one run;
- ``build_report`` over all runs (comparison, DeLong tests against the baseline run, Pareto
  plot, and every run's curves, calibration, frequency buckets and plots).

Goal: the report over 10 runs of 1M rows builds in under 60 s.

    python benchmarks/bench_report.py --runs 10 --rows 1000000 --json benchmarks/results/report.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Timing, format_table, median, save_result, start_benchmark, time_call  # noqa: E402

from recsys.data.schema import CRITEO_CATEGORICAL as SPARSE_FEATURES  # noqa: E402
from recsys.data.schema import CRITEO_DENSE as DENSE_FEATURES  # noqa: E402
from recsys.data.layout import (  # noqa: E402
    LABEL,
    VOCAB_SCHEMA,
    DatasetMeta,
    shard_path,
    shard_schema,
    vocab_path,
)

CARDINALITIES = (1460, 583, 100_000, 50_000, 305, 24, 12_517, 633, 3, 93_145, 5_683, 100_000, 3_194,
                 27, 14_992, 100_000, 10, 5_652, 2_173, 4, 100_000, 18, 15, 50_000, 105, 42_000)
GOAL_SECONDS = 60.0


@dataclasses.dataclass
class ReportBenchResult:
    runs: int
    rows_per_run: int
    repeats: int
    baseline_global_metrics_s: Timing
    report_one_run_s: Timing
    report_all_runs_s: Timing
    report_vs_baseline: float
    html_bytes: int
    goal_seconds: float
    goal_met: bool


def write_dataset(root: Path, rows: int, rng: np.random.Generator) -> np.ndarray:
    """A prepared test split: skewed frequency-ranked ids, ~2% OOV per feature. Returns the true logit."""
    sparse = {}
    logit = np.full(rows, -1.5)
    for name, card in zip(SPARSE_FEATURES, CARDINALITIES):
        kept = card - 1
        ids = (kept * rng.random(rows) ** 4).astype(np.int32)  # skewed: low ranks most frequent
        ids[rng.random(rows) < 0.02] = kept  # the OOV row
        sparse[name] = ids
        logit += rng.normal(0, 0.3, card)[ids]
        counts = np.bincount(ids[ids < kept], minlength=kept)  # stands in for the training counts
        vocab = vocab_path(root, name)
        vocab.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"raw": np.arange(kept, dtype=np.int64), "count": counts.astype(np.int64)},
                                schema=VOCAB_SCHEMA), vocab)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    cols = {LABEL: labels, **{n: np.zeros(rows, np.float32) for n in DENSE_FEATURES}, **sparse}
    path = shard_path(root, "test", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols, schema=shard_schema(list(DENSE_FEATURES), list(SPARSE_FEATURES))), path, row_group_size=1 << 18)
    DatasetMeta(num_embeddings=dict(zip(SPARSE_FEATURES, CARDINALITIES)), rows={"train": 0, "valid": 0, "test": rows},
                dense_features=list(DENSE_FEATURES), sparse_features=list(SPARSE_FEATURES),
                source={"kind": "bench_report"}).save(root)
    return logit


def write_runs(root: Path, dataset: Path, logit: np.ndarray, n_runs: int, rng: np.random.Generator) -> list[Path]:
    from recsys.core.metrics import CTRMetrics
    from recsys.evaluation.runs import write_predictions

    labels = pq.read_table(shard_path(dataset, "test", 0), columns=[LABEL]).column(LABEL).to_numpy()
    full_bytes = sum(CARDINALITIES) * 16 * 4
    runs = []
    for i in range(n_runs):
        run = root / f"run{i:02d}"
        run.mkdir(parents=True)
        noise = 0.3 + 0.15 * i
        scores = 1 / (1 + np.exp(-(logit + rng.normal(0, noise, logit.size))))
        write_predictions(run, scores, labels)
        total = int(full_bytes / 2**i)
        record = {
            "split": "test", "dataset": str(dataset), "metrics": CTRMetrics.compute(scores, labels).to_dict(),
            "memory": {"tables": 26, "parameters": total // 4, "weight_bytes": total, "optimizer_bytes": 0,
                       "combiner_parameters": 0, "total_bytes": total},
            "feature_memory": [{"feature": f, "method": "hash" if i else "full", "description": "", "tables": [f],
                                "shared": False, "weight_bytes": total * c / sum(CARDINALITIES), "optimizer_bytes": 0,
                                "combiner_bytes": 0, "total_bytes": total * c / sum(CARDINALITIES)}
                               for f, c in zip(SPARSE_FEATURES, CARDINALITIES)],
            "train": {"steps": 500, "samples": 500 * 2048, "samples_per_s": 40_000.0},
            "predictions": "predictions.parquet",
        }
        (run / "eval.json").write_text(json.dumps(record))
        lines = [{"kind": "train", "step": s, "loss": 0.5 - s * 1e-4, "samples_per_s": 40_000.0} for s in range(50, 501, 50)]
        lines += [{"kind": "valid", "step": s, "auc": 0.7 + s * 1e-5, "logloss": 0.5} for s in (250, 500)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        runs.append(run)
    return runs


def global_metrics(runs: list[Path]) -> None:
    from recsys.core.metrics import CTRMetrics

    for run in runs:
        t = pq.read_table(run / "predictions.parquet")
        CTRMetrics.compute(t.column("score").to_numpy(), t.column("label").to_numpy())


def _seconds(t: Timing) -> tuple[float, str]:
    return t.median, f"s  min {t.min:.2f}  max {t.max:.2f}"


def main(argv=None) -> ReportBenchResult:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--keep", type=Path, default=None, help="copy the last report (HTML + JSON) here")
    args = p.parse_args(argv)
    start_benchmark(tcmalloc=False)
    from recsys.evaluation.report_html import build_report

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        tmp = Path(tmp)
        logit = write_dataset(tmp / "data", args.rows, rng)
        runs = write_runs(tmp / "runs", tmp / "data", logit, args.runs, rng)
        del logit
        out = tmp / "report.html"
        baseline = time_call(lambda: global_metrics(runs), args.repeats)
        one = time_call(lambda: build_report([str(runs[0])], tmp / "one.html"), args.repeats)
        every = time_call(lambda: build_report([str(tmp / "runs")], out), args.repeats)
        if args.keep:
            args.keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, args.keep)
            shutil.copy(out.with_suffix(".json"), args.keep.with_suffix(".json"))
        html_bytes = out.stat().st_size
    result = ReportBenchResult(
        runs=args.runs, rows_per_run=args.rows, repeats=args.repeats,
        baseline_global_metrics_s=Timing.of(baseline), report_one_run_s=Timing.of(one), report_all_runs_s=Timing.of(every),
        report_vs_baseline=median(every) / median(baseline), html_bytes=html_bytes,
        goal_seconds=GOAL_SECONDS, goal_met=median(every) < GOAL_SECONDS,
    )
    rows = [
        (f"global metrics of {args.runs} runs (baseline)", *_seconds(result.baseline_global_metrics_s)),
        ("report over 1 run", *_seconds(result.report_one_run_s)),
        (f"report over {args.runs} runs", *_seconds(result.report_all_runs_s)),
        ("report / baseline", result.report_vs_baseline, "x"),
        ("HTML size", html_bytes, "bytes"),
        (f"under {GOAL_SECONDS:.0f} s", result.goal_met, ""),
    ]
    print(format_table(rows, title=f"bench_report: {args.runs} runs x {args.rows:,} test rows, median of {args.repeats}"))
    save_result(args.json, result)
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
