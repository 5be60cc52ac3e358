"""Serving latency, throughput, size and quality of exported artifacts vs eager PyTorch.

Trains (or reuses, from ``--cache-dir``) the Kaggle DLRM on synthetic Kaggle-profile data,
exports it at fp32, fp16, int8 and int4 (``recsys.serving.export.export_artifact``), and for each
quantization scores raw test rows with the TorchScript artifact, the ``torch.export`` artifact
and the eager serving module (the same inference tables, run by Python: the baseline):

- ``latency_ms`` p50/p99 at batch 1, 64 and 512 on 1 thread (one call per request);
- ``samples_per_s`` at batch 512 on 2 threads;
- ``artifact_bytes`` (the model file) and ``table_bytes`` (the tables' rows) against the fp32
  checkpoint's tables;
- ``auc``, ``logloss`` and ``auc_delta`` against fp32 eager on the test split.

Every timing is the median of ``--repeats`` (>= 3) repeats, with min and max beside it.

    python benchmarks/bench_serving.py --json benchmarks/results/serving.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    cached_synthetic_dataset,
    compose_train_job,
    format_table,
    median,
    raw_rows,
    save_result,
    start_benchmark,
    synthetic_job_overrides,
)

QUANTIZE = ("fp32", "fp16", "int8", "int4")
FORMATS = ("torchscript", "export", "eager")
LATENCY_BATCHES = (1, 64, 512)
THROUGHPUT_BATCH = 512
GOALS = {"p99_batch1_ms": 1.0, "int8_auc_delta": 0.001, "int4_auc_delta": 0.005, "int8_table_ratio": 0.3}


@dataclasses.dataclass
class ServingRow:
    format: str
    quantize: str
    batch: int
    threads: int
    p50_ms: float | None
    p99_ms: float | None
    samples_per_s: float | None
    artifact_bytes: int | None
    table_bytes: int
    auc: float
    logloss: float
    auc_delta: float
    # spread over the repeats: min and max of the p50, p99 and samples/s medians above
    p50_ms_range: list[float] | None = None
    p99_ms_range: list[float] | None = None
    samples_per_s_range: list[float] | None = None


@dataclasses.dataclass
class ServingResult:
    rows: int
    cardinality_scale: float
    test_rows: int
    fp32_checkpoint_table_bytes: int
    trained_model_auc: float
    repeats: int
    results: list[ServingRow]
    goals: dict
    config: dict


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--rows", type=int, default=300_000, help="synthetic rows over all splits")
    p.add_argument("--cardinality-scale", type=float, default=0.05, help="1 = full Kaggle cardinalities")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=2048, help="training batch")
    p.add_argument("--model", default="kaggle")
    p.add_argument("--test-rows", type=int, default=30_000, help="test rows scored for AUC and throughput")
    p.add_argument("--requests", type=int, default=200, help="timed calls per latency measurement at batch 1")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    if args.repeats < 3:
        p.error("--repeats must be >= 3 (figures are medians of repeats)")
    return args


def trained_checkpoint(args, dataset: Path) -> tuple[Path, float]:
    """Train the model once per (dataset, options); later runs reuse the run directory."""
    from recsys.core.io import read_json
    from recsys.train.loop import train

    overrides = synthetic_job_overrides(dataset, args)
    key = hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:10]
    run_dir = args.cache_dir / f"serving-run-{dataset.name}-{key}"
    if not (run_dir / "eval.json").exists():
        job, _ = compose_train_job(overrides)
        train(job, str(run_dir))
    return run_dir, read_json(run_dir / "eval.json")["metrics"]["auc"]


def raw_test_inputs(dataset: Path, limit: int):
    """The test split as raw artifact inputs (ranks back to raw ids, dense back to counts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from recsys.data.layout import SPARSE_FEATURES, list_shards, vocab_path

    table = pa.concat_tables([pq.read_table(p) for p in list_shards(dataset, "test")]).slice(0, limit)
    # the OOV rank (one past the vocabulary) becomes an id no vocabulary holds
    vocab = [np.append(pq.read_table(vocab_path(dataset, f), columns=["raw"]).column("raw").to_numpy(), -2)
             for f in SPARSE_FEATURES]
    label, counts, sparse = raw_rows(table, vocab, [0.0] * 13, np.random.default_rng(0))
    dense = np.where(np.isnan(counts), -1, counts).astype(np.int64)
    return torch.from_numpy(dense), torch.from_numpy(sparse.astype(np.int64)), label


def latencies(model, dense, sparse, batch: int, calls: int) -> list[float]:
    """Milliseconds of ``calls`` single requests of ``batch`` rows (after a warm-up)."""
    import torch

    n = dense.shape[0]
    with torch.no_grad():
        for i in range(5):
            model(dense[:batch], sparse[:batch])
        out = []
        for i in range(calls):
            start = (i * batch) % max(n - batch, 1)
            d, s = dense[start : start + batch], sparse[start : start + batch]
            t = time.perf_counter()
            model(d, s)
            out.append((time.perf_counter() - t) * 1e3)
    return out


def score(model, dense, sparse, batch: int = 4096) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.cat([model(dense[i : i + batch], sparse[i : i + batch]) for i in range(0, len(dense), batch)]).numpy()


def spread(values: list[float]) -> tuple[float, list[float]]:
    return median(values), [min(values), max(values)]


def measure(name, quantize, model, dense, sparse, label, args, sizes, baseline_auc) -> list[ServingRow]:
    import torch

    from recsys.core.metrics import CTRMetrics

    torch.set_num_threads(2)
    metrics = CTRMetrics.compute(score(model, dense, sparse), label)
    auc_delta = metrics.auc - baseline_auc if baseline_auc is not None else 0.0
    common = dict(format=name, quantize=quantize, artifact_bytes=sizes[0], table_bytes=sizes[1],
                  auc=metrics.auc, logloss=metrics.logloss, auc_delta=auc_delta)
    rows = []
    torch.set_num_threads(1)
    for batch in LATENCY_BATCHES:
        calls = max(20, args.requests // max(1, batch // 16)) if batch > 1 else args.requests
        p50s, p99s = [], []
        for _ in range(args.repeats):
            ms = latencies(model, dense, sparse, batch, calls)
            p50s.append(float(np.percentile(ms, 50)))
            p99s.append(float(np.percentile(ms, 99)))
        p50, p50_range = spread(p50s)
        p99, p99_range = spread(p99s)
        rows.append(ServingRow(batch=batch, threads=1, p50_ms=p50, p99_ms=p99, samples_per_s=None,
                               p50_ms_range=p50_range, p99_ms_range=p99_range, **common))
    torch.set_num_threads(2)
    n = (min(len(dense), 40 * THROUGHPUT_BATCH) // THROUGHPUT_BATCH) * THROUGHPUT_BATCH
    rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        score(model, dense[:n], sparse[:n], THROUGHPUT_BATCH)
        rates.append(n / (time.perf_counter() - t))
    rate, rate_range = spread(rates)
    rows.append(ServingRow(batch=THROUGHPUT_BATCH, threads=2, p50_ms=None, p99_ms=None, samples_per_s=rate,
                           samples_per_s_range=rate_range, **common))
    return rows


def main(argv=None) -> ServingResult:
    args = parse_args(argv)
    start_benchmark(logging.INFO, tcmalloc=False)  # recsys-predict keeps the default allocator
    from recsys.serving.artifact import MODEL_FILES, load_model, read_metadata
    from recsys.serving.config import ArtifactFormat, ExportConfig, Quantize
    from recsys.serving.export import export_artifact
    from recsys.models.build import load_trained_model
    from recsys.serving.model import serving_model

    dataset = cached_synthetic_dataset(args.rows, args.seed, args.cache_dir, args.cardinality_scale)
    run_dir, trained_auc = trained_checkpoint(args, dataset)
    dense, sparse, label = raw_test_inputs(dataset, args.test_rows)
    trained = load_trained_model(run_dir, str(dataset))
    model, meta = trained.model, trained.meta
    results: list[ServingRow] = []
    baseline_auc = None
    fp32_table_bytes = None
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        for quantize in QUANTIZE:
            out = Path(tmp) / quantize
            export_artifact(ExportConfig(checkpoint=str(run_dir), output=str(out), quantize=quantize))
            plan = read_metadata(out)["plan"]
            fp32_table_bytes = plan["fp32_table_bytes"]
            eager = serving_model(model.eval(), meta, dataset, Quantize(quantize))
            models = {
                "eager": (eager, None),
                "torchscript": (load_model(out, ArtifactFormat.torchscript), (out / MODEL_FILES[ArtifactFormat.torchscript]).stat().st_size),
                "export": (load_model(out, ArtifactFormat.export), (out / MODEL_FILES[ArtifactFormat.export]).stat().st_size),
            }
            for name in ("eager", "torchscript", "export"):  # eager first: fp32 eager is the AUC baseline
                m, size = models[name]
                rows = measure(name, quantize, m, dense, sparse, label, args, (size, plan["table_bytes"]), baseline_auc)
                if baseline_auc is None:
                    baseline_auc = rows[0].auc
                results.extend(rows)
                print(f"{quantize} {name}: p99 batch 1 {rows[0].p99_ms:.3f} ms, {rows[-1].samples_per_s:,.0f} samples/s, AUC {rows[0].auc:.5f}", flush=True)

    def pick(fmt, q, batch, threads=1):
        return next(r for r in results if (r.format, r.quantize, r.batch, r.threads) == (fmt, q, batch, threads))

    goals = {
        "p99_batch1_ms_torchscript_fp32": pick("torchscript", "fp32", 1).p99_ms,
        "p99_batch1_met": pick("torchscript", "fp32", 1).p99_ms <= GOALS["p99_batch1_ms"],
        "int8_auc_delta": pick("torchscript", "int8", 1).auc_delta,
        "int8_auc_met": abs(pick("torchscript", "int8", 1).auc_delta) <= GOALS["int8_auc_delta"],
        "int4_auc_delta": pick("torchscript", "int4", 1).auc_delta,
        "int4_auc_met": abs(pick("torchscript", "int4", 1).auc_delta) <= GOALS["int4_auc_delta"],
        "int8_table_ratio": pick("torchscript", "int8", 1).table_bytes / fp32_table_bytes,
        "int8_table_met": pick("torchscript", "int8", 1).table_bytes / fp32_table_bytes <= GOALS["int8_table_ratio"],
        "torchscript_vs_eager_p50_batch1": pick("eager", "fp32", 1).p50_ms / pick("torchscript", "fp32", 1).p50_ms,
        "torchscript_not_slower_met": all(
            pick("torchscript", q, b).p50_ms <= pick("eager", q, b).p50_ms for q in QUANTIZE for b in LATENCY_BATCHES),
    }
    result = ServingResult(rows=args.rows, cardinality_scale=args.cardinality_scale, test_rows=len(label),
                           fp32_checkpoint_table_bytes=fp32_table_bytes, trained_model_auc=trained_auc,
                           repeats=args.repeats, results=results, goals=goals,
                           config={k: str(v) for k, v in vars(args).items()})
    table = [(f"{r.quantize} {r.format} b{r.batch} t{r.threads}",
              f"p50 {r.p50_ms:.3f} p99 {r.p99_ms:.3f} ms" if r.p50_ms is not None else f"{r.samples_per_s:,.0f} samples/s",
              f"AUC {r.auc:.5f} ({r.auc_delta:+.5f}) tables {r.table_bytes:,} B") for r in results]
    table += [(k, v, "") for k, v in goals.items()]
    print(format_table(table, title="bench_serving: artifacts vs eager"))
    save_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
