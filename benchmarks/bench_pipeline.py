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
* **train_samples_per_s** (tcmalloc) and **train_samples_per_s_glibc**: recsys DLRM, Kaggle
  config (dim 16, bottom 13-512-256-64-16, top 367-512-256-1) over full Kaggle tables
  (33.76M rows), fused exact row-wise Adagrad in the table backward and torch Adagrad for the
  dense layers, batch 2048. Batches come from a synthetic dataset generated at full Kaggle
  cardinality and are materialised in memory before timing, so data loading is not timed.
  ``--warmup`` steps, then ``--repeats`` timed runs of ``--steps`` steps each.
* **torchrec_samples_per_s**: torchrec's own ``torchrec.models.dlrm.DLRM`` over a
  ``FusedEmbeddingBagCollection`` (row-wise Adagrad fused), same tables, MLPs, batches, steps.

Each training measurement runs in its own child process (this script with the hidden
``--worker`` flag), because the allocator must be chosen before a process starts: the parent
sets or clears ``LD_PRELOAD`` and ``RECSYS_ALLOCATOR``; the child reports
``recsys.allocator.describe_allocator()`` and the parent checks it got what it asked for.
Children run one at a time (each holds 2.2 GB of tables plus optimizer state).

Roofline model
--------------
What one training sample costs if the machine only did the unavoidable work, at the rates the
machine actually reaches on the primitives involved. The primitives are measured in the recsys
tcmalloc training child, once after each timed repeat, so training and its bound see the same
load from other processes; ``train_vs_roofline`` is the median of the per-repeat ratios.

* **Dense math.** For every Linear layer (in → out) at batch 2048: the forward GEMM
  ``(B, in) @ (in, out)``, the input-gradient GEMM ``(B, out) @ (out, in)`` (not for the first
  bottom layer: the dense features need no gradient) and the weight-gradient GEMM
  ``(out, B) @ (B, in)``; plus the interaction's ``bmm`` of 27 16-wide vectors, forward and its
  two backward ``bmm``. 2·m·n·k FLOPs each, ≈2.9 MFLOP per sample. Each GEMM is timed alone
  at its shape; the dense time per sample is Σ (FLOPs of the shape ÷ FLOP/s measured at that
  shape) ÷ B. ``gemm_gflops`` is the aggregate rate, Σ FLOPs ÷ Σ time.
* **Embeddings.** 26 random 64-byte rows (dim 16, fp32) per sample are gathered in the forward
  and read-modify-written by the fused optimizer in the backward. Measured as ``index_select``
  plus ``index_add_`` of the batch's real ids (offset per table) on one table holding all the
  model's rows (33.76M × 16 at full size), so cache and TLB misses are realistic.

``roofline_samples_per_s = 1 / (dense time per sample + embedding time per sample)``. It ignores
element-wise work (bias, ReLU, loss, the dense optimizer step), so it is an upper bound;
``train_vs_roofline`` says how much of it the training step reaches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    cached_synthetic_dataset,
    emit_result,
    format_table,
    median,
    rate,
    run_worker,
    save_result,
    synthetic_criteo_tsv,
    time_call,
)

log = logging.getLogger("bench_pipeline")

BATCH_SIZE = 2048
EMBEDDING_DIM = 16
BOTTOM_MLP = [512, 256, 64, 16]
TOP_MLP = [512, 256, 1]
TABLE_LR = 0.05
DENSE_LR = 0.01
MODELS = ("recsys", "torchrec")
ROOFLINE_BATCHES = 16  # batches whose ids the embedding primitive gathers and updates


# ---------------------------------------------------------------------------------------------
# Result


@dataclasses.dataclass
class PipelineResult:
    """Everything one run measured (written to ``--json``)."""

    rows: int
    batch_size: int
    ingest_rows_per_s: float
    pandas_rows_per_s: float
    ingest_vs_pandas: float
    loader_samples_per_s: float
    train_samples_per_s: float
    train_samples_per_s_glibc: float
    torchrec_samples_per_s: float
    roofline_samples_per_s: float
    train_vs_roofline: float
    train_vs_torchrec: float
    tcmalloc_vs_glibc: float
    flops_per_sample: float
    gemm_gflops: float
    dense_us_per_sample: float
    embedding_us_per_sample: float
    embedding_rows_per_s: float
    table_rows: int
    train_dataset_rows: int
    steps: int
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


# ---------------------------------------------------------------------------------------------
# Ingest: recsys and pandas


def recsys_ingest(tsv: Path, out: Path) -> int:
    from recsys.data.config import PreprocessConfig
    from recsys.data.ingest import preprocess

    stats = preprocess(PreprocessConfig(input=str(tsv), output=str(out)), progress=False)
    return stats.rows_in


def pandas_ingest(tsv: Path, out: Path, chunk_rows: int = 1 << 18, valid_fraction: float = 0.1,
                  test_fraction: float = 0.1, seed: int = 2018) -> int:
    """The straightforward pandas ingest: two chunked passes over the file.

    Pass 1 assigns each row a split, counts ids of the training rows per column
    (``value_counts`` per chunk, summed at the end). Vocabularies rank ids by count (most
    frequent = 0, unseen ids share an OOV row). Pass 2 re-reads the file, maps ids to ranks,
    transforms dense values (missing/negative → 0, log1p) and writes one Parquet file per chunk
    and split.
    """
    import pandas as pd

    from recsys.data.layout import LABEL, SPLITS
    from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE

    names = [LABEL, *CRITEO_DENSE, *CRITEO_CATEGORICAL]
    dtype = {LABEL: "int8", **dict.fromkeys(CRITEO_DENSE, "float32"), **dict.fromkeys(CRITEO_CATEGORICAL, "str")}

    def chunks():
        reader = pd.read_csv(tsv, sep="\t", header=None, names=names, dtype=dtype, engine="c", chunksize=chunk_rows)
        for i, chunk in enumerate(reader):
            u = np.random.default_rng([seed, i]).random(len(chunk))
            split = np.where(u < valid_fraction, 1, np.where(u < valid_fraction + test_fraction, 2, 0))
            yield i, chunk, split

    counts: dict[str, list] = {f: [] for f in CRITEO_CATEGORICAL}
    rows = 0
    for _, chunk, split in chunks():
        rows += len(chunk)
        train = chunk[split == 0]
        for f in CRITEO_CATEGORICAL:
            counts[f].append(train[f].value_counts(dropna=False))

    (out / "vocab").mkdir(parents=True)
    vocab = {}
    for f in CRITEO_CATEGORICAL:
        total = pd.concat(counts[f]).groupby(level=0, dropna=False).sum().sort_values(ascending=False, kind="stable")
        vocab[f] = pd.Index(total.index)
        total.rename("count").rename_axis("raw").reset_index().to_parquet(out / "vocab" / f"{f}.parquet", index=False)

    for s in SPLITS:
        (out / s).mkdir()
    for i, chunk, split in chunks():
        frame = pd.DataFrame({LABEL: chunk[LABEL]})
        for f in CRITEO_DENSE:
            frame[f] = np.log1p(chunk[f].fillna(0).clip(lower=0)).astype("float32")
        for f in CRITEO_CATEGORICAL:
            ranks = vocab[f].get_indexer(chunk[f])
            frame[f] = np.where(ranks < 0, len(vocab[f]), ranks).astype("int32")
        for code, s in enumerate(SPLITS):
            frame[split == code].to_parquet(out / s / f"part-{i:05d}.parquet", index=False, compression="zstd")
    return rows


def time_ingest(fn, tsv: Path, workdir: Path, repeats: int) -> tuple[list[float], int]:
    """Seconds of each repeat of ``fn(tsv, out)`` into a fresh directory, and the rows it read."""
    times, rows = [], 0
    for r in range(repeats):
        out = workdir / f"{fn.__name__}-{r}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        rows = fn(tsv, out)
        times.append(time.perf_counter() - start)
        if r < repeats - 1:
            shutil.rmtree(out)
    return times, rows


def time_loader(root: Path, repeats: int) -> tuple[list[float], int]:
    from recsys.data.loader import ParquetBatches

    batches = ParquetBatches(root, "train", BATCH_SIZE, shuffle=True, prefetch=4)

    def epoch() -> None:
        for _ in batches:
            pass

    return time_call(epoch, repeats, warmup=1), batches.rows


# ---------------------------------------------------------------------------------------------
# Training (child processes)


def materialise_batches(root: Path, count: int) -> tuple[list, dict[str, int]]:
    """``count`` training batches in memory (cycling the split if it is short), and table sizes
    (rows per sparse feature, in feature order)."""
    from recsys.data.loader import ParquetBatches

    source = ParquetBatches(root, "train", BATCH_SIZE, shuffle=True, prefetch=0, drop_last=True)
    batches = []
    while len(batches) < count:
        source.set_epoch(source.epoch + 1)
        batches.extend(source)
    for b in batches[:count]:
        b.sparse.offsets()  # computed once here, as a loader thread would, not in the timed step
    return batches[:count], {f: source.meta.num_embeddings[f] for f in source.meta.sparse_features}


def build_recsys(root: Path, num_embeddings: dict[str, int]):
    """recsys's DLRM as ``recsys-train`` builds it (full tables, fused FBGEMM lookup); returns
    (model, dense optimizer)."""
    from recsys.data.layout import DatasetMeta
    from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
    from recsys.models.build import build_model
    from recsys.models.config import DLRMConfig
    from recsys.train.config import DenseOptimizer, TrainJobConfig
    from recsys.train.loop import make_dense_optimizer

    cfg = TrainJobConfig()
    cfg.data.path = str(root)
    cfg.model = DLRMConfig(EMBEDDING_DIM, list(BOTTOM_MLP), list(TOP_MLP))
    cfg.trainer.table_optimizer = TableOptimizerConfig(kind=TableOptimizer.rowwise_adagrad, lr=TABLE_LR)
    meta = DatasetMeta.load(root)
    if dict(meta.num_embeddings) != num_embeddings:
        raise ValueError("table sizes differ from the dataset's")
    model = build_model(cfg.recipe(), meta)
    return model, make_dense_optimizer(model, DenseOptimizer.adagrad, DENSE_LR)


def build_torchrec(root: Path, num_embeddings: dict[str, int]):
    """torchrec's DLRM over a FusedEmbeddingBagCollection; returns (model, dense optimizer)."""
    import torch
    from torchrec.models.dlrm import DLRM
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
    from torchrec.optim import RowWiseAdagrad

    tables = [EmbeddingBagConfig(name=f"t_{f}", embedding_dim=EMBEDDING_DIM, num_embeddings=n, feature_names=[f])
              for f, n in num_embeddings.items()]
    ebc = FusedEmbeddingBagCollection(tables=tables, optimizer_type=RowWiseAdagrad,
                                      optimizer_kwargs={"lr": TABLE_LR, "eps": 1e-8}, device=torch.device("cpu"))
    model = DLRM(embedding_bag_collection=ebc, dense_in_features=13, dense_arch_layer_sizes=list(BOTTOM_MLP),
                 over_arch_layer_sizes=list(TOP_MLP))
    table_params = {id(p) for p in ebc.parameters()}
    dense = [p for p in model.parameters() if id(p) not in table_params]
    return model, torch.optim.Adagrad(dense, lr=DENSE_LR)


BUILDERS = {"recsys": build_recsys, "torchrec": build_torchrec}


def time_training(model, optimizer, batches: list, warmup: int, steps: int, repeats: int,
                  after_repeat=None) -> tuple[list[float], float]:
    """Seconds of each repeat of ``steps`` training steps (after ``warmup`` steps), final loss.

    ``after_repeat`` (untimed) runs after each repeat: the roofline's primitives are measured
    there, interleaved with the training they bound, so both see the same load from other
    processes on a shared machine.
    """
    import torch

    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    cursor = 0
    loss = torch.zeros(())

    def run(n: int) -> None:
        nonlocal cursor, loss
        for _ in range(n):
            batch = batches[cursor % len(batches)]
            cursor += 1
            logits = model(batch.dense, batch.sparse).reshape(-1)
            loss = loss_fn(logits, batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # table rows are updated inside (fused optimizer)
            optimizer.step()

    run(warmup)
    times = []
    for _ in range(repeats):
        times += time_call(lambda: run(steps), 1)
        if after_repeat is not None:
            after_repeat()
    return times, float(loss.detach())


def worker_allocator_info() -> dict:
    from recsys.allocator import active_allocator, describe_allocator

    line = describe_allocator()
    log.info("worker %d: %s", os.getpid(), line)
    return {"active": active_allocator(), "describe": line, "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "recsys_allocator_env": os.environ.get("RECSYS_ALLOCATOR", "")}


def train_worker(args: argparse.Namespace) -> dict:
    import torch

    allocator = worker_allocator_info()
    torch.manual_seed(0)
    batches, num_embeddings = materialise_batches(Path(args.data), args.warmup + args.steps)
    start = time.perf_counter()
    model, optimizer = BUILDERS[args.model](Path(args.data), num_embeddings)
    build_seconds = time.perf_counter() - start
    roofline = Roofline(batches[:ROOFLINE_BATCHES], num_embeddings) if args.roofline else None
    measurements: list[dict] = []
    times, loss = time_training(model, optimizer, batches, args.warmup, args.steps, args.repeats,
                                after_repeat=roofline and (lambda: measurements.append(roofline.measure())))
    result = {"model": args.model, "allocator": allocator, "seconds": times, "steps": args.steps,
              "samples_per_s": rate(args.steps * BATCH_SIZE, times), "final_loss": loss,
              "build_seconds": build_seconds, "table_rows": sum(num_embeddings.values()),
              "threads": torch.get_num_threads()}
    if roofline is not None:
        result["roofline"] = roofline.summarise(measurements)
        per_repeat = [args.steps * BATCH_SIZE / t for t in times]
        result["roofline"]["train_vs_roofline_per_repeat"] = [
            t / r for t, r in zip(per_repeat, result["roofline"]["roofline_per_repeat"])]
    return result


# ---------------------------------------------------------------------------------------------
# Roofline (child process)


def linear_layers() -> list[tuple[str, int, int]]:
    """(name, in, out) of every Linear layer of the Kaggle DLRM."""
    layers, width = [], 13
    for i, out in enumerate(BOTTOM_MLP):
        layers.append((f"bottom{i}", width, out))
        width = out
    num_vectors = 27
    width = EMBEDDING_DIM + num_vectors * (num_vectors - 1) // 2
    for i, out in enumerate(TOP_MLP):
        layers.append((f"top{i}", width, out))
        width = out
    return layers


def gemm_shapes(batch: int) -> list[dict]:
    """Every GEMM of one training step: name, kind, (m, k, n) with batch count for bmm, FLOPs."""
    shapes = []
    for index, (name, fan_in, fan_out) in enumerate(linear_layers()):
        shapes.append({"name": f"{name}.fwd", "op": "mm", "m": batch, "k": fan_in, "n": fan_out})
        if index > 0:  # the first layer's input (the dense features) needs no gradient
            shapes.append({"name": f"{name}.grad_in", "op": "mm", "m": batch, "k": fan_out, "n": fan_in})
        shapes.append({"name": f"{name}.grad_w", "op": "mm", "m": fan_out, "k": batch, "n": fan_in})
    v, d = 27, EMBEDDING_DIM
    shapes.append({"name": "interaction.fwd", "op": "bmm", "b": batch, "m": v, "k": d, "n": v})
    shapes.append({"name": "interaction.grad_a", "op": "bmm", "b": batch, "m": v, "k": v, "n": d})
    shapes.append({"name": "interaction.grad_b", "op": "bmm", "b": batch, "m": d, "k": v, "n": v})
    for s in shapes:
        s["flops"] = 2 * s.get("b", 1) * s["m"] * s["k"] * s["n"]
    return shapes


def gemm_operands(shape: dict) -> tuple:
    """Operands of a GEMM laid out as autograd has them (weights are (out, in), row-major).

    Linear ``fwd`` is ``x @ W^T``, ``grad_in`` is ``g @ W``, ``grad_w`` is ``g^T @ x``; the
    interaction's forward is ``S @ S^T`` and its backward ``G @ S`` and ``S^T @ G``.
    """
    import torch

    kind = shape["name"].rsplit(".", 1)[1]
    if shape["op"] == "bmm":
        b, v, d = shape["b"], 27, EMBEDDING_DIM
        stacked, gram = torch.randn(b, v, d), torch.randn(b, v, v)
        return {"fwd": (stacked, stacked.transpose(1, 2)), "grad_a": (gram, stacked),
                "grad_b": (stacked.transpose(1, 2), gram)}[kind]
    if kind == "fwd":
        batch, fan_in, fan_out = shape["m"], shape["k"], shape["n"]
        return torch.randn(batch, fan_in), torch.randn(fan_out, fan_in).t()
    if kind == "grad_in":
        batch, fan_out, fan_in = shape["m"], shape["k"], shape["n"]
        return torch.randn(batch, fan_out), torch.randn(fan_out, fan_in)
    fan_out, batch, fan_in = shape["m"], shape["k"], shape["n"]
    return torch.randn(batch, fan_out).t(), torch.randn(batch, fan_in)


def time_gemm(shape: dict, iters: int) -> float:
    """Median seconds of one GEMM of ``shape``."""
    import torch

    a, b = gemm_operands(shape)
    op = torch.bmm if shape["op"] == "bmm" else torch.mm
    return median(time_call(lambda: op(a, b), iters, warmup=3))


class Roofline:
    """The roofline's primitives for a model's tables and a list of its batches (see the module
    docstring); :meth:`measure` times them once, :meth:`summarise` turns measurements into rates."""

    def __init__(self, batches: list, num_embeddings: dict[str, int], gemm_iters: int = 20) -> None:
        import torch

        self.shapes = gemm_shapes(BATCH_SIZE)
        self.gemm_iters = gemm_iters
        self.features = len(num_embeddings)
        self.table_rows = sum(num_embeddings.values())
        offsets = torch.tensor(np.concatenate([[0], np.cumsum(list(num_embeddings.values()))[:-1]]))
        self.table = torch.empty(self.table_rows, EMBEDDING_DIM).uniform_(-0.01, 0.01)
        # KeyedJaggedTensor values are feature-major (F blocks of B ids): shift each into its table
        self.ids = [(b.sparse.values().view(self.features, -1) + offsets[:, None]).reshape(-1) for b in batches]
        self.grad = torch.randn(self.ids[0].numel(), EMBEDDING_DIM) * 1e-3

    def _embedding_pass(self) -> None:
        for ids in self.ids:
            rows = self.table.index_select(0, ids)  # forward gather
            self.table.index_add_(0, ids, self.grad, alpha=-1.0)  # backward read-modify-write
            del rows

    def measure(self) -> dict:
        """Seconds of each GEMM shape (median of ``gemm_iters``) and of one batch's embedding rows."""
        gemms = {s["name"]: time_gemm(s, self.gemm_iters) for s in self.shapes}
        embedding = median(time_call(self._embedding_pass, 1, warmup=1)) / len(self.ids)
        return {"gemm_s": gemms, "embedding_s": embedding}

    def summarise(self, measurements: list[dict]) -> dict:
        """Medians over measurements; per-repeat rooflines in ``roofline_per_repeat``."""
        flops = sum(s["flops"] for s in self.shapes)
        dense = [sum(m["gemm_s"].values()) / BATCH_SIZE for m in measurements]
        embedding = [m["embedding_s"] / BATCH_SIZE for m in measurements]
        shapes = [dict(s, seconds=median([m["gemm_s"][s["name"]] for m in measurements])) for s in self.shapes]
        for s in shapes:
            s["gflops"] = s["flops"] / s["seconds"] / 1e9
        return {
            "flops_per_sample": flops / BATCH_SIZE,
            "gemm_gflops": flops / sum(s["seconds"] for s in shapes) / 1e9,
            "dense_s_per_sample": median(dense),
            "embedding_s_per_sample": median(embedding),
            "embedding_rows_per_s": self.features / median(embedding),
            "roofline_samples_per_s": median([1.0 / (d + e) for d, e in zip(dense, embedding)]),
            "roofline_per_repeat": [1.0 / (d + e) for d, e in zip(dense, embedding)],
            "gemm_shapes": shapes,
        }


# ---------------------------------------------------------------------------------------------
# Parent


def worker_argv(args: argparse.Namespace, data: Path, model: str, roofline: bool) -> list[str]:
    argv = [str(Path(__file__).resolve()), "--worker", "train", "--model", model, "--data", str(data),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    return argv + (["--roofline"] if roofline else [])


def train_child(args, data: Path, model: str, allocator: str, roofline: bool = False) -> dict:
    """Measure training in a child process under ``allocator``; verify it really ran under it."""
    log.info("training %s under %s%s ...", model, allocator, " (+ roofline)" if roofline else "")
    result = run_worker(worker_argv(args, data, model, roofline), allocator, timeout=args.worker_timeout)
    result["allocator"]["requested"] = allocator
    result["allocator"]["ok"] = result["allocator"]["active"] == allocator
    if not result["allocator"]["ok"]:
        log.error("%s child asked for %s but ran under %s", model, allocator, result["allocator"]["active"])
    log.info("%s/%s: %.0f samples/s", model, allocator, result["samples_per_s"])
    return result


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

    # The roofline's primitives are measured right after the training they bound, so both see
    # about the same load from other processes on a shared machine.
    # One child at a time: each holds the full tables (2.2 GB fp32) and optimizer state.
    train = train_child(args, train_data, "recsys", "tcmalloc", roofline=True)
    torchrec = train_child(args, train_data, "torchrec", "tcmalloc")
    glibc = train_child(args, train_data, "recsys", "glibc")
    children = {"recsys_tcmalloc": train, "torchrec_tcmalloc": torchrec, "recsys_glibc": glibc}
    roof = train["roofline"]

    ingest_rate, pandas_rate = rate(rows, ingest_s), rate(rows, pandas_s)
    return PipelineResult(
        rows=rows,
        batch_size=BATCH_SIZE,
        ingest_rows_per_s=ingest_rate,
        pandas_rows_per_s=pandas_rate,
        ingest_vs_pandas=ingest_rate / pandas_rate,
        loader_samples_per_s=rate(loader_rows, loader_s),
        train_samples_per_s=train["samples_per_s"],
        train_samples_per_s_glibc=glibc["samples_per_s"],
        torchrec_samples_per_s=torchrec["samples_per_s"],
        roofline_samples_per_s=roof["roofline_samples_per_s"],
        train_vs_roofline=median(roof["train_vs_roofline_per_repeat"]),
        train_vs_torchrec=train["samples_per_s"] / torchrec["samples_per_s"],
        tcmalloc_vs_glibc=train["samples_per_s"] / glibc["samples_per_s"],
        flops_per_sample=roof["flops_per_sample"],
        gemm_gflops=roof["gemm_gflops"],
        dense_us_per_sample=roof["dense_s_per_sample"] * 1e6,
        embedding_us_per_sample=roof["embedding_s_per_sample"] * 1e6,
        embedding_rows_per_s=roof["embedding_rows_per_s"],
        table_rows=train["table_rows"],
        train_dataset_rows=args.train_rows,
        steps=args.steps,
        warmup_steps=args.warmup,
        repeats=args.repeats,
        allocator_check=all(c["allocator"]["ok"] for c in children.values()),
        allocators={"parent": _parent_allocator(), **{k: c["allocator"] for k, c in children.items()}},
        versions=versions(),
        cpu_count=os.cpu_count() or 0,
        torch_threads=torch.get_num_threads(),
        timings={
            "ingest_s": ingest_s, "pandas_s": pandas_s, "loader_epoch_s": loader_s, "loader_rows": loader_rows,
            "train_s": train["seconds"], "train_glibc_s": glibc["seconds"], "torchrec_s": torchrec["seconds"],
            "roofline_per_repeat": roof["roofline_per_repeat"],
            "train_vs_roofline_per_repeat": roof["train_vs_roofline_per_repeat"],
            "model_build_s": {k: children[k]["build_seconds"] for k in ("recsys_tcmalloc", "recsys_glibc", "torchrec_tcmalloc")},
            "final_loss": {k: children[k]["final_loss"] for k in ("recsys_tcmalloc", "recsys_glibc", "torchrec_tcmalloc")},
        },
        gemm_shapes=roof["gemm_shapes"],
        config={"tsv": str(tsv), "train_data": str(train_data), "seed": args.seed,
                "cardinality_scale": args.cardinality_scale, "ingest_repeats": args.ingest_repeats,
                "embedding_dim": EMBEDDING_DIM, "bottom_mlp": BOTTOM_MLP, "top_mlp": TOP_MLP,
                "table_optimizer": f"exact row-wise Adagrad lr={TABLE_LR}", "dense_optimizer": f"Adagrad lr={DENSE_LR}"},
    )


def _parent_allocator() -> dict:
    from recsys.allocator import active_allocator

    return {"active": active_allocator()}


def report(r: PipelineResult) -> str:
    rows = [
        ("rows (raw TSV)", r.rows, ""),
        ("ingest_rows_per_s", r.ingest_rows_per_s, "recsys preprocess"),
        ("pandas_rows_per_s", r.pandas_rows_per_s, "chunked read_csv + value_counts + to_parquet"),
        ("ingest_vs_pandas", r.ingest_vs_pandas, "goal >= 2"),
        ("loader_samples_per_s", r.loader_samples_per_s, f"ParquetBatches, batch {r.batch_size}, prefetch 4"),
        ("train_samples_per_s", r.train_samples_per_s, f"recsys DLRM, {r.table_rows:,} table rows, tcmalloc"),
        ("train_samples_per_s_glibc", r.train_samples_per_s_glibc, "same, glibc malloc"),
        ("tcmalloc_vs_glibc", r.tcmalloc_vs_glibc, ""),
        ("torchrec_samples_per_s", r.torchrec_samples_per_s, "torchrec DLRM + FusedEBC, tcmalloc"),
        ("train_vs_torchrec", r.train_vs_torchrec, ""),
        ("flops_per_sample", r.flops_per_sample, "GEMM + bmm, forward + backward"),
        ("gemm_gflops", r.gemm_gflops, "measured at the model's shapes"),
        ("dense_us_per_sample", r.dense_us_per_sample, ""),
        ("embedding_us_per_sample", r.embedding_us_per_sample, f"26 rows gather + update, {r.embedding_rows_per_s:,.0f} rows/s"),
        ("roofline_samples_per_s", r.roofline_samples_per_s, "1 / (dense + embedding time per sample)"),
        ("train_vs_roofline", r.train_vs_roofline, "goal >= 0.85"),
        ("allocator_check", r.allocator_check, "children ran under the allocator asked for"),
    ]
    title = (f"bench_pipeline: {r.cpu_count} CPUs, torch {r.versions.get('torch')}, "
             f"medians of {r.repeats} repeats x {r.steps} steps")
    return format_table(rows, title)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the raw TSV to ingest")
    p.add_argument("--json", type=str, default=None, help="write the result here")
    p.add_argument("--steps", type=int, default=60, help="timed training steps per repeat")
    p.add_argument("--warmup", type=int, default=10, help="untimed training steps first")
    p.add_argument("--repeats", type=int, default=3, help="repeats of every timed measurement")
    p.add_argument("--ingest-repeats", type=int, default=None, help="repeats of the two ingests (default: --repeats)")
    p.add_argument("--train-rows", type=int, default=200_000, help="rows of the synthetic dataset feeding training")
    p.add_argument("--cache-dir", type=str, default=str(DEFAULT_CACHE_DIR), help="where generated inputs are cached")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker-timeout", type=float, default=1200.0, help=argparse.SUPPRESS)
    # For tests: shrink every table (the synthetic data's cardinalities) by this factor.
    p.add_argument("--cardinality-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    # Internal: run one measurement in this (child) process and print its JSON.
    p.add_argument("--worker", choices=["train"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--roofline", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", choices=MODELS, default="recsys", help=argparse.SUPPRESS)
    p.add_argument("--data", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ingest_repeats is None:
        args.ingest_repeats = args.repeats
    for name in ("rows", "steps", "repeats", "ingest_repeats", "train_rows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.worker:
        emit_result(train_worker(args))
        return 0
    result = run(args)
    print(report(result))
    if args.json:
        save_result(args.json, result)
    if not result.allocator_check:
        log.error("a child process did not run under the allocator it was given: %s", json.dumps(result.allocators))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
