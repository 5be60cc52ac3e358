"""End-to-end pipeline benchmark: raw Criteo text → prepared shards → batches → DLRM training.

Run ``python benchmarks/bench_pipeline.py --rows 1000000 --json out.json``. Every figure below is
measured in the same run, on the same machine, and reported as the median over ``--repeats``
repeats (the machines are shared and noisy; compare ratios, not absolute rates).

Method
------
* **Raw data.** A realistic raw Criteo TSV (label, 13 integer columns and 26 8-hex-digit ids,
  empty fields for missing values, Zipf-skewed ids with 10M-id tails) is written from recsys's
  synthetic generator at full Kaggle cardinality (:func:`common.synthetic_criteo_tsv`, cached
  by rows and seed).
* **ingest_rows_per_s**: :func:`recsys.data.ingest.preprocess` of that file (random 8:1:1
  split, frequency vocabularies, zstd Parquet shards).
* **pandas_rows_per_s**: the straightforward pandas way on the same file: chunked
  ``pd.read_csv`` (C engine, int8 / float32 / string dtypes), per-column ``value_counts`` of the
  training rows accumulated across chunks, vocabularies ranked by count, then a second pass that
  maps ids with ``Index.get_indexer`` and writes zstd Parquet with ``to_parquet``. Same split,
  same dense transform, same outputs (shards + vocabularies).
* **loader_samples_per_s**: :class:`recsys.data.loader.ParquetBatches` over the ingested train
  split (batch 2048, shuffled, prefetch on), batches consumed and dropped.
* **train_loop_samples_per_s** (the headline): ``recsys-train`` itself, the Kaggle DLRM at full
  cardinalities from the Parquet loader, under tcmalloc, ``--loop-steps`` steps per run,
  ``--repeats`` runs (:mod:`pipeline_loop`), a third of them before the in-memory step's child,
  a third between it and torchrec's, a third after; the same model and optimizers as the in-memory step
  (the reference DLRM's options, not the ``kaggle`` preset's FM component, constant vector and
  batch norm), so ``loop_vs_step`` is what the loader, validation and logging cost.
* **step_samples_per_s** (the in-memory step, tcmalloc) and **step_samples_per_s_glibc**: recsys DLRM, Kaggle
  config (dim 16, bottom 13-512-256-64-16, top 367-512-256-1) over full Kaggle tables
  (33.76M rows), fused exact row-wise Adagrad in the table backward and torch Adagrad for the
  dense layers, batch 2048. Batches come from a synthetic dataset generated at full Kaggle
  cardinality and are materialised in memory before timing, so data loading is not timed.
  ``--warmup`` steps, then ``--repeats`` timed runs of ``--steps`` steps each.
* **torchrec_samples_per_s**: torchrec's own ``torchrec.models.dlrm.DLRM`` over a
  ``FusedEmbeddingBagCollection`` (row-wise Adagrad fused), same tables, MLPs, batches, steps,
  and the same dense precision (its forward under bfloat16 autocast where recsys's is).
* **dense_precision**: what ``--dense-precision`` (default ``auto``, the Kaggle preset's
  ``model.dense_precision``) resolved to on this machine: ``bf16`` (mixed precision, where the
  CPU computes bfloat16 natively) or ``fp32``. With bf16, **torchrec_fp32_samples_per_s** is
  torchrec's DLRM as its example trains it, in fp32, and ``loop_vs_torchrec_fp32`` the loop
  against it (``loop_vs_torchrec`` always compares equal precisions); **step_fp32_samples_per_s**
  is recsys's in-memory step in fp32 and ``bf16_vs_fp32_step`` what bf16 buys.

Each in-memory measurement runs in its own child process (:mod:`pipeline_worker`), because the allocator must be chosen before a process starts: the parent
sets or clears ``LD_PRELOAD`` and ``RECSYS_ALLOCATOR``; the child reports
``recsys.allocator.describe_allocator()`` and the parent checks it got what it asked for.
Children run one at a time (each holds 2.2 GB of tables plus optimizer state).

Roofline model (:mod:`pipeline_roofline`)
--------------
What one training sample costs if the machine only did the unavoidable work, at the best rates
the machine reaches on the primitives involved (each timed as its fastest run). The primitives
are measured in the recsys tcmalloc training child, once after each timed repeat, so training
and its bound see the same load from other processes; ``step_vs_roofline`` is the median of the
per-repeat ratios, and the benchmark fails if any repeat's step beats its roofline.

* **Dense math.** For every Linear layer (in → out) at batch 2048: the forward GEMM
  ``(B, in) @ (in, out)``, the input-gradient GEMM ``(B, out) @ (out, in)`` (not for the first
  bottom layer: the dense features need no gradient) and the weight-gradient GEMM
  ``(out, B) @ (B, in)``; plus the interaction's ``bmm`` of 27 16-wide vectors, forward and its
  two backward ``bmm``. 2·m·n·k FLOPs each, ≈2.9 MFLOP per sample. Each GEMM is timed alone
  at its shape, in the dense layers' precision (bfloat16 operands with ``bf16``); the dense time per sample is Σ (FLOPs of the shape ÷ FLOP/s measured at that
  shape) ÷ B. ``gemm_gflops`` is the aggregate rate, Σ FLOPs ÷ Σ time.
* **Embeddings.** 26 random 64-byte rows (dim 16, fp32) per sample must at least be read once.
  Measured as ``index_select`` of the batch's real ids (offset per table) on one table holding
  all the model's rows (33.76M × 16 at full size), so cache and TLB misses are realistic.

``roofline_samples_per_s = 1 / (dense time per sample + embedding time per sample)``. It ignores
element-wise work (bias, ReLU, loss, the dense optimizer step), so it is an upper bound;
``step_vs_roofline`` says how much of it the training step reaches.

The machine is shared with other jobs: absolute rates move between runs; compare the ratios of
one run (every peer is measured in the same run, one after the other).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    Timing,
    cached_synthetic_dataset,
    format_table,
    median,
    rate,
    save_result,
    synthetic_criteo_tsv,
)
from pipeline_ingest import pandas_ingest, recsys_ingest, time_ingest, time_loader  # noqa: E402
from pipeline_loop import time_train_loop  # noqa: E402
from pipeline_model import BATCH_SIZE, BOTTOM_MLP, DENSE_LR, EMBEDDING_DIM, TABLE_LR, TOP_MLP  # noqa: E402
from pipeline_worker import train_child  # noqa: E402

log = logging.getLogger("bench_pipeline")


@dataclasses.dataclass
class PipelineResult:
    """Everything one run measured (written to ``--json``). ``*_spread`` are samples/s over the repeats."""

    rows: int
    batch_size: int
    ingest_rows_per_s: float
    pandas_rows_per_s: float
    ingest_vs_pandas: float
    loader_samples_per_s: float
    train_loop_samples_per_s: float
    train_loop_spread: Timing
    step_samples_per_s: float
    step_spread: Timing
    step_samples_per_s_glibc: float
    torchrec_samples_per_s: float
    torchrec_spread: Timing
    dense_precision: str
    step_fp32_samples_per_s: float | None
    step_fp32_spread: Timing | None
    bf16_vs_fp32_step: float | None
    torchrec_fp32_samples_per_s: float | None
    torchrec_fp32_spread: Timing | None
    loop_vs_torchrec_fp32: float | None
    roofline_samples_per_s: float
    roofline_per_repeat: list
    step_vs_roofline: float
    step_vs_roofline_per_repeat: list
    roofline_bound_holds: bool
    loop_vs_step: float
    loop_vs_torchrec: float
    step_vs_torchrec: float
    tcmalloc_vs_glibc: float
    flops_per_sample: float
    gemm_gflops: float
    dense_us_per_sample: float
    embedding_us_per_sample: float
    embedding_rows_per_s: float
    table_rows: int
    train_dataset_rows: int
    steps: int
    loop_steps: int
    warmup_steps: int
    repeats: int
    allocator_check: bool
    allocators: dict
    versions: dict
    cpu_count: int
    torch_threads: int
    timings: dict
    gemm_shapes: list
    config: dict


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "fbgemm-gpu-cpu", "fbgemm-gpu", "torchrec", "pyarrow", "pandas", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def run(args: argparse.Namespace) -> PipelineResult:
    import torch

    cache = Path(args.cache_dir)
    log.info("raw TSV of %d rows (cached in %s) ...", args.rows, cache)
    tsv = synthetic_criteo_tsv(args.rows, args.seed, cache, args.cardinality_scale)
    log.info("training batches: synthetic dataset of %d rows at Kaggle cardinality x%g ...",
             args.train_rows, args.cardinality_scale)
    train_data = cached_synthetic_dataset(args.train_rows, args.seed, cache, args.cardinality_scale)

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        tmp = Path(tmp)
        log.info("recsys ingest ...")
        ingest_s, rows = time_ingest(recsys_ingest, tsv, tmp, args.ingest_repeats)
        log.info("pandas ingest ...")
        pandas_s, pandas_rows = time_ingest(pandas_ingest, tsv, tmp, args.ingest_repeats)
        if pandas_rows != rows:
            raise AssertionError(f"pandas read {pandas_rows} rows, recsys {rows}")
        log.info("loader ...")
        loader_s, loader_rows = time_loader(tmp / f"recsys_ingest-{args.ingest_repeats - 1}", args.repeats)

    # The loop's runs go before, between and after the in-memory step's and torchrec's children, so
    # the three figures its ratios compare see the machine over the same minutes (its rate moves).
    # One child at a time: each holds the full tables (2.2 GB fp32) and optimizer state.
    log.info("recsys-train, %d runs of %d steps, around the in-memory children ...", args.repeats, args.loop_steps)
    later = args.repeats // 3
    loop_runs = time_train_loop(train_data, args.loop_steps, args.repeats - 2 * later, args.worker_timeout, args.dense_precision)
    step = train_child(args, train_data, "recsys", "tcmalloc", roofline=True)
    loop_runs += time_train_loop(train_data, args.loop_steps, later, args.worker_timeout, args.dense_precision)
    torchrec = train_child(args, train_data, "torchrec", "tcmalloc")
    loop_runs += time_train_loop(train_data, args.loop_steps, later, args.worker_timeout, args.dense_precision)
    glibc = train_child(args, train_data, "recsys", "glibc")
    children = {"recsys_tcmalloc": step, "torchrec_tcmalloc": torchrec, "recsys_glibc": glibc}
    bf16 = step["dense_precision"] == "bf16"
    if bf16:  # recsys's step in fp32 (what bf16 buys), and the peer as its example trains it
        children["recsys_fp32_tcmalloc"] = train_child(args, train_data, "recsys", "tcmalloc", precision="fp32")
        children["torchrec_fp32_tcmalloc"] = train_child(args, train_data, "torchrec", "tcmalloc", precision="fp32")
    step_fp32, torchrec_fp32 = children.get("recsys_fp32_tcmalloc"), children.get("torchrec_fp32_tcmalloc")
    roof = step["roofline"]
    per_repeat = [args.steps * BATCH_SIZE / t for t in step["seconds"]]
    step_vs_roof = [s / r for s, r in zip(per_repeat, roof["roofline_per_repeat"])]

    samples = args.steps * BATCH_SIZE
    loop = Timing.of([r["samples_per_s"] for r in loop_runs])
    step_rates = Timing.of([samples / t for t in step["seconds"]])
    torchrec_rates = Timing.of([samples / t for t in torchrec["seconds"]])
    torchrec_fp32_rates = torchrec_fp32 and Timing.of([samples / t for t in torchrec_fp32["seconds"]])
    ingest_rate, pandas_rate = rate(rows, ingest_s), rate(rows, pandas_s)
    return PipelineResult(
        rows=rows,
        batch_size=BATCH_SIZE,
        ingest_rows_per_s=ingest_rate,
        pandas_rows_per_s=pandas_rate,
        ingest_vs_pandas=ingest_rate / pandas_rate,
        loader_samples_per_s=rate(loader_rows, loader_s),
        train_loop_samples_per_s=loop.median,
        train_loop_spread=loop,
        step_samples_per_s=step["samples_per_s"],
        step_spread=step_rates,
        step_samples_per_s_glibc=glibc["samples_per_s"],
        torchrec_samples_per_s=torchrec["samples_per_s"],
        torchrec_spread=torchrec_rates,
        dense_precision=step["dense_precision"],
        step_fp32_samples_per_s=step_fp32 and step_fp32["samples_per_s"],
        step_fp32_spread=step_fp32 and Timing.of([samples / t for t in step_fp32["seconds"]]),
        bf16_vs_fp32_step=step_fp32 and step["samples_per_s"] / step_fp32["samples_per_s"],
        torchrec_fp32_samples_per_s=torchrec_fp32 and torchrec_fp32["samples_per_s"],
        torchrec_fp32_spread=torchrec_fp32_rates,
        loop_vs_torchrec_fp32=torchrec_fp32 and loop.median / torchrec_fp32["samples_per_s"],
        roofline_samples_per_s=roof["roofline_samples_per_s"],
        roofline_per_repeat=roof["roofline_per_repeat"],
        step_vs_roofline=median(step_vs_roof),
        step_vs_roofline_per_repeat=step_vs_roof,
        roofline_bound_holds=all(ratio <= 1.0 for ratio in step_vs_roof),
        loop_vs_step=loop.median / step["samples_per_s"],
        loop_vs_torchrec=loop.median / torchrec["samples_per_s"],
        step_vs_torchrec=step["samples_per_s"] / torchrec["samples_per_s"],
        tcmalloc_vs_glibc=step["samples_per_s"] / glibc["samples_per_s"],
        flops_per_sample=roof["flops_per_sample"],
        gemm_gflops=roof["gemm_gflops"],
        dense_us_per_sample=roof["dense_s_per_sample"] * 1e6,
        embedding_us_per_sample=roof["embedding_s_per_sample"] * 1e6,
        embedding_rows_per_s=roof["embedding_rows_per_s"],
        table_rows=step["table_rows"],
        train_dataset_rows=args.train_rows,
        steps=args.steps,
        loop_steps=args.loop_steps,
        warmup_steps=args.warmup,
        repeats=args.repeats,
        allocator_check=all(c["allocator"]["ok"] for c in children.values())
        and all(r["allocator"].startswith("tcmalloc") for r in loop_runs),
        allocators={"parent": _parent_allocator(), **{k: c["allocator"] for k, c in children.items()},
                    "recsys_train": [r["allocator"] for r in loop_runs]},
        versions=versions(),
        cpu_count=os.cpu_count() or 0,
        torch_threads=torch.get_num_threads(),
        timings={
            "ingest_s": ingest_s, "pandas_s": pandas_s, "loader_epoch_s": loader_s, "loader_rows": loader_rows,
            "train_loop_samples_per_s": [r["samples_per_s"] for r in loop_runs],
            "step_s": step["seconds"], "step_glibc_s": glibc["seconds"], "torchrec_s": torchrec["seconds"],
            "step_fp32_s": step_fp32 and step_fp32["seconds"], "torchrec_fp32_s": torchrec_fp32 and torchrec_fp32["seconds"],
            "model_build_s": {k: children[k]["build_seconds"] for k in children},
            "final_loss": {k: children[k]["final_loss"] for k in children},
        },
        gemm_shapes=roof["gemm_shapes"],
        config={"tsv": str(tsv), "train_data": str(train_data), "seed": args.seed,
                "cardinality_scale": args.cardinality_scale, "ingest_repeats": args.ingest_repeats,
                "embedding_dim": EMBEDDING_DIM, "bottom_mlp": BOTTOM_MLP, "top_mlp": TOP_MLP,
                "table_optimizer": f"exact row-wise Adagrad lr={TABLE_LR}", "dense_optimizer": f"Adagrad lr={DENSE_LR}",
                "dense_precision_asked": args.dense_precision,
                "note": "shared machine: absolute rates are noisy; ratios are within this run"},
    )


def _parent_allocator() -> dict:
    from recsys.allocator import active_allocator

    return {"active": active_allocator()}


def _spread_note(s: Timing) -> str:
    return f"median of {s.n}, min {s.min:,.0f}, max {s.max:,.0f}"


def report(r: PipelineResult) -> str:
    rows = [
        ("rows (raw TSV)", r.rows, ""),
        ("ingest_rows_per_s", r.ingest_rows_per_s, "recsys preprocess"),
        ("pandas_rows_per_s", r.pandas_rows_per_s, "chunked read_csv + value_counts + to_parquet"),
        ("ingest_vs_pandas", r.ingest_vs_pandas, "goal >= 2"),
        ("loader_samples_per_s", r.loader_samples_per_s, f"ParquetBatches, batch {r.batch_size}, prefetch 4"),
        ("train_loop_samples_per_s", r.train_loop_samples_per_s,
         f"recsys-train, {r.table_rows:,} table rows, {_spread_note(r.train_loop_spread)}"),
        ("step_samples_per_s", r.step_samples_per_s, f"in-memory step, {_spread_note(r.step_spread)}"),
        ("step_samples_per_s_glibc", r.step_samples_per_s_glibc, "same, glibc malloc"),
        ("tcmalloc_vs_glibc", r.tcmalloc_vs_glibc, "in-memory step"),
        ("torchrec_samples_per_s", r.torchrec_samples_per_s,
         f"torchrec DLRM + FusedEBC, dense {r.dense_precision}, {_spread_note(r.torchrec_spread)}"),
        ("loop_vs_step", r.loop_vs_step, "goal >= 0.9"),
        ("loop_vs_torchrec", r.loop_vs_torchrec, f"goal >= 1.2; both dense {r.dense_precision}"),
        ("step_vs_torchrec", r.step_vs_torchrec, ""),
        *([("step_fp32_samples_per_s", r.step_fp32_samples_per_s, f"in-memory step in fp32, {_spread_note(r.step_fp32_spread)}"),
           ("bf16_vs_fp32_step", r.bf16_vs_fp32_step, "what bf16 dense layers buy"),
           ("torchrec_fp32_samples_per_s", r.torchrec_fp32_samples_per_s,
            f"torchrec DLRM as its example trains it (fp32), {_spread_note(r.torchrec_fp32_spread)}"),
           ("loop_vs_torchrec_fp32", r.loop_vs_torchrec_fp32, "recsys-train's bf16 loop against it")]
          if r.torchrec_fp32_samples_per_s else []),
        ("flops_per_sample", r.flops_per_sample, "GEMM + bmm, forward + backward"),
        ("gemm_gflops", r.gemm_gflops, "fastest at the model's shapes"),
        ("dense_us_per_sample", r.dense_us_per_sample, ""),
        ("embedding_us_per_sample", r.embedding_us_per_sample, f"26 rows gathered, {r.embedding_rows_per_s:,.0f} rows/s"),
        ("roofline_samples_per_s", r.roofline_samples_per_s,
         "per repeat: " + ", ".join(f"{x:,.0f}" for x in r.roofline_per_repeat)),
        ("step_vs_roofline", r.step_vs_roofline, "per repeat: " + ", ".join(f"{x:.2f}" for x in r.step_vs_roofline_per_repeat)),
        ("roofline_bound_holds", r.roofline_bound_holds, "every repeat's step <= its roofline"),
        ("allocator_check", r.allocator_check, "children ran under the allocator asked for"),
    ]
    title = (f"bench_pipeline: {r.cpu_count} CPUs, torch {r.versions.get('torch')}, "
             f"medians of {r.repeats} repeats ({r.steps} in-memory steps, {r.loop_steps} recsys-train steps)")
    return format_table(rows, title)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the raw TSV to ingest")
    p.add_argument("--json", type=str, default=None, help="write the result here")
    p.add_argument("--steps", type=int, default=60, help="timed in-memory training steps per repeat")
    p.add_argument("--loop-steps", type=int, default=200, help="steps of each recsys-train run")
    p.add_argument("--warmup", type=int, default=10, help="untimed in-memory training steps first")
    p.add_argument("--repeats", type=int, default=3, help="repeats of every timed measurement")
    p.add_argument("--ingest-repeats", type=int, default=None, help="repeats of the two ingests (default: --repeats)")
    p.add_argument("--train-rows", type=int, default=1_000_000,
                   help="rows of the synthetic dataset feeding training (1M: 390-step epochs; a 200K set's 88-step "
                        "epochs put an epoch's start, and its block read, in every 88 steps, which a user's long "
                        "epochs do not)")
    p.add_argument("--cache-dir", type=str, default=str(DEFAULT_CACHE_DIR), help="where generated inputs are cached")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dense-precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="model.dense_precision of every recsys model (auto: the Kaggle preset's) and torchrec's peer")
    p.add_argument("--worker-timeout", type=float, default=1200.0, help=argparse.SUPPRESS)
    # For tests: shrink every table (the synthetic data's cardinalities) by this factor.
    p.add_argument("--cardinality-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ingest_repeats is None:
        args.ingest_repeats = args.repeats
    for name in ("rows", "steps", "loop_steps", "repeats", "ingest_repeats", "train_rows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    result = run(args)
    print(report(result))
    if args.json:
        save_result(args.json, result)
    if not result.allocator_check:
        log.error("a child process did not run under the allocator it was given: %s", json.dumps(result.allocators))
        return 1
    if not result.roofline_bound_holds:
        log.error("the roofline is not a bound: step/roofline per repeat %s (fix the roofline model)",
                  result.step_vs_roofline_per_repeat)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
