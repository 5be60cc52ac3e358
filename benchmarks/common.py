"""Helpers shared by the benchmark scripts.

* :func:`start_benchmark`: what every benchmark does first (allocator, logging, the allocator line).
* :func:`time_call`, :func:`round_robin` / :class:`Timing`: wall-clock timings with warm-up, summarised by the median
  with min and max (the machines are shared and noisy; medians and ratios are what we report).
* :func:`save_result` / :func:`format_table`: a result dataclass to JSON and to a printed table.
* :func:`allocator_env` / :func:`run_worker`: run a Python command in a child process under a
  chosen malloc (tcmalloc via ``LD_PRELOAD``, or glibc), and read back the JSON it prints.
* :func:`write_criteo_tsv` / :func:`synthetic_criteo_tsv`: raw Criteo-format text generated from
  recsys's synthetic generator, written without any per-row Python, cached by (rows, seed).
* :func:`cached_synthetic_dataset`: a prepared synthetic dataset, cached likewise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

RESULT_PREFIX = "BENCH_RESULT "  # a worker's result line on stdout: prefix + one JSON object
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recsys" / "bench"
ALLOCATORS = ("tcmalloc", "glibc")
LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def start_benchmark(log_level: int = logging.WARNING, tcmalloc: bool = True) -> str:
    """Set a benchmark's process up as the entry points set theirs; return the allocator line.

    Logs go to stderr at ``log_level`` with FBGEMM's and torchrec's chatter kept out. With
    ``tcmalloc`` (as the training entry points, so training figures are comparable; serving's
    and the report's keep the default malloc) the process re-executes itself under tcmalloc
    when it is installed (``recsys.allocator.ensure_tcmalloc``) and prints the allocator in
    use, which results record: every training figure depends on it.
    """
    from recsys.allocator import describe_allocator, ensure_tcmalloc
    from recsys.core.logging import quiet_libraries

    if tcmalloc:
        ensure_tcmalloc()
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    quiet_libraries()
    line = describe_allocator()
    if tcmalloc:
        print(line, flush=True)
    return line


# ---------------------------------------------------------------------------------------------
# Timing


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def round_robin(fns: dict[str, Callable[[int], object]], calls: int, repeats: int, warmup: int = 3,
                sync: Callable[[], object] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in turn: ``repeats`` rounds of ``calls`` calls of
    each, after ``warmup`` calls of each, so the machine's drift falls on all alike. A function
    gets its call's index (to cycle through batches); ``sync`` waits for a device before the
    clock is read."""
    for fn in fns.values():
        for i in range(warmup):
            fn(i)
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            for i in range(calls):
                fn(i)
            sync()
            seconds[name].append((time.perf_counter() - start) / calls)
    return seconds


@dataclasses.dataclass
class Timing:
    """Repeated measurements of one figure (seconds, milliseconds or a rate: the field holding
    it names the unit), as every reported figure carries them: the median, min, max and count."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Timing":
        if not values:
            raise ValueError("a timing needs at least one measurement")
        return cls(median(values), float(min(values)), float(max(values)), len(values))


def rate(count: float, seconds: Sequence[float]) -> float:
    """``count`` per second at the median of ``seconds``."""
    return count / median(seconds)


# ---------------------------------------------------------------------------------------------
# Results


def save_result(path: str | os.PathLike, result) -> None:
    """Write a result (a dataclass or a dict) as indented JSON (atomically), making its directory."""
    from recsys.core.io import write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result if isinstance(result, dict) else dataclasses.asdict(result))


def format_value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: Sequence[tuple[str, object, str]], title: str = "") -> str:
    """A two-column text table of (name, value, note) rows."""
    cells = [(name, format_value(value), note) for name, value, note in rows]
    w_name = max(len(c[0]) for c in cells)
    w_value = max(len(c[1]) for c in cells)
    lines = [title, "-" * max(len(title), w_name + w_value + 4)] if title else []
    lines += [f"{n:<{w_name}}  {v:>{w_value}}  {note}".rstrip() for n, v, note in cells]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Child processes with a chosen allocator


def find_tcmalloc() -> str | None:
    from recsys.allocator import find_tcmalloc as find

    return find()


def allocator_env(allocator: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child that must run under ``allocator`` from its first instruction.

    tcmalloc: ``LD_PRELOAD`` holds the library (and ``RECSYS_ALLOCATOR=tcmalloc``); glibc: every
    tcmalloc entry is removed from ``LD_PRELOAD`` and ``RECSYS_ALLOCATOR=glibc`` stops recsys
    entry points from re-executing themselves under tcmalloc.
    """
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")
    env = dict(os.environ if base is None else base)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and "tcmalloc" not in p]
    if allocator == "tcmalloc":
        lib = find_tcmalloc()
        if lib is None:
            raise RuntimeError("tcmalloc is not installed (apt-get install libtcmalloc-minimal4)")
        preload.insert(0, lib)
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    env["RECSYS_ALLOCATOR"] = allocator
    return env


def run_worker(argv: Sequence[str], allocator: str, timeout: float | None = None) -> dict:
    """Run ``python *argv`` under ``allocator`` and return the JSON object it printed.

    The child prints its result as one line ``RESULT_PREFIX + json``; everything else it writes
    (logs, stderr) is passed through. Raises if the child fails or prints no result.
    """
    cmd = [sys.executable, *argv]
    proc = subprocess.run(cmd, env=allocator_env(allocator), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"worker {' '.join(cmd)} printed no result line:\n{proc.stdout[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def emit_result(obj: dict) -> None:
    """A worker's side of :func:`run_worker`."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# Raw Criteo text


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SHIFTS = np.arange(28, -1, -4, dtype=np.uint32)  # most significant hex digit first


def hex8(ids: np.ndarray) -> np.ndarray:
    """32-bit ids as 8-digit lower-case hex byte strings (numpy ``S8``), vectorised."""
    ids = np.asarray(ids).astype(np.uint32)
    digits = (ids[:, None] >> _SHIFTS) & np.uint32(0xF)  # (N, 8)
    return np.ascontiguousarray(_HEX[digits]).view("S8").reshape(-1)


def criteo_table(label: np.ndarray, dense: np.ndarray, sparse: np.ndarray):
    """An Arrow table of the 40 raw Criteo columns.

    Args:
        label: (N,) 0/1.
        dense: (N, 13) integer counts as float64, NaN where missing.
        sparse: (N, 26) 32-bit raw ids as int64, -1 where missing.
    """
    import pyarrow as pa

    from recsys.data.layout import LABEL
    from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE

    columns = {LABEL: pa.array(np.asarray(label, np.int8))}
    for j, name in enumerate(CRITEO_DENSE):
        values = dense[:, j]
        missing = np.isnan(values)
        columns[name] = pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing)
    for j, name in enumerate(CRITEO_CATEGORICAL):
        ids = sparse[:, j]
        columns[name] = pa.array(hex8(ids), type=pa.binary(), mask=ids < 0)
    return pa.table(columns)


def write_criteo_tsv(sink, label: np.ndarray, dense: np.ndarray, sparse: np.ndarray) -> None:
    """Append rows in Criteo's raw layout (tab separated, empty = missing, no header) to ``sink``
    (a path or a binary file object). Arguments as :func:`criteo_table`."""
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    pacsv.write_csv(criteo_table(label, dense, sparse), sink, options)


def raw_rows(table, vocab_raw: list[np.ndarray], dense_missing: Sequence[float], rng: np.random.Generator):
    """Rows of a prepared dataset (see :mod:`recsys.data.layout`) turned back into raw Criteo values.

    Dense values become counts again (``expm1`` of log1p); each feature's missing rate is
    restored by blanking that share of values among those that are 0 (a prepared dataset stores
    both "missing" and "count 0" as 0). Sparse frequency ranks become the vocabulary's raw
    32-bit ids (``-1``, the missing id, becomes an empty field). Returns (label, dense, sparse)
    as :func:`criteo_table` takes them.
    """
    from recsys.data.layout import LABEL
    from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE

    label = table.column(LABEL).to_numpy()
    dense = np.stack([table.column(f).to_numpy() for f in CRITEO_DENSE], axis=1).astype(np.float64)
    counts = np.rint(np.expm1(dense))
    zero = counts == 0
    zero_share = np.maximum(zero.mean(axis=0), 1e-12)
    blank_share = np.minimum(1.0, np.asarray(dense_missing, np.float64) / zero_share)
    counts[zero & (rng.random(counts.shape) < blank_share)] = np.nan
    sparse = np.stack([vocab_raw[j][table.column(f).to_numpy()] for j, f in enumerate(CRITEO_CATEGORICAL)], axis=1)
    return label, counts, sparse


def synthetic_criteo_tsv(rows: int, seed: int, cache_dir: str | os.PathLike, cardinality_scale: float = 1.0) -> Path:
    """A raw Criteo-format TSV of ``rows`` synthetic Kaggle-profile rows, cached in ``cache_dir``.

    The rows come from recsys's generator (:func:`cached_synthetic_dataset`), written back out
    as raw text with :func:`raw_rows`. The file is written to a temporary name and renamed, so
    a cached file is always complete.
    """
    import pyarrow.parquet as pq

    from recsys.data.layout import SPLITS, list_shards, vocab_path
    from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE
    from recsys.data.synth_model import DENSE_MISSING

    cache_dir = Path(cache_dir)
    path = cache_dir / f"criteo-kaggle-synth-r{rows}-s{seed}-c{cardinality_scale:g}-v2.tsv"
    if path.exists():
        return path
    root = cached_synthetic_dataset(rows, seed, cache_dir, cardinality_scale)
    vocab_raw = [pq.read_table(vocab_path(root, f), columns=["raw"]).column("raw").to_numpy() for f in CRITEO_CATEGORICAL]
    dense_missing = [DENSE_MISSING[f] for f in CRITEO_DENSE]
    rng = np.random.default_rng([seed, 7])
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as sink:
        for split in SPLITS:
            for shard in list_shards(root, split):
                for batch in pq.ParquetFile(shard).iter_batches(batch_size=1 << 18):
                    write_criteo_tsv(sink, *raw_rows(batch, vocab_raw, dense_missing, rng))
    os.replace(tmp, path)
    return path


def cached_synthetic_dataset(rows: int, seed: int, cache_dir: str | os.PathLike, cardinality_scale: float = 1.0) -> Path:
    """A prepared synthetic Kaggle-profile dataset (``recsys.data.synth.generate``), cached."""
    from recsys.data.config import SynthConfig
    from recsys.data.synth import generate

    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    root = Path(cache_dir) / f"synth-kaggle-r{rows}-s{seed}-c{cardinality_scale:g}"
    if (root / "meta.json").exists():  # generate() writes meta.json last
        return root
    shutil.rmtree(root, ignore_errors=True)
    generate(SynthConfig(output=str(root), profile="kaggle", rows=rows, seed=seed,
                         cardinality_scale=cardinality_scale), progress=False)
    return root


# ---------------------------------------------------------------------------------------------
# Training jobs on synthetic data


def add_synthetic_training_args(parser) -> None:
    """The options every "train on synthetic Kaggle-profile data" benchmark takes."""
    parser.add_argument("--rows", type=int, default=4_000_000, help="synthetic rows over all splits")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cardinality-scale", type=float, default=1.0, help="1 = full Kaggle cardinalities")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--model", default="kaggle", help="conf/model preset")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of every training job, e.g. trainer.table_optimizer.lr=0.1")


def synthetic_job_overrides(dataset: Path, args, *extra: str) -> list[str]:
    """One epoch of the ``--model`` DLRM on ``dataset``, quiet, then ``extra`` and the user's overrides."""
    return [
        f"model={args.model}",
        f"data.path={dataset}",
        f"data.batch_size={args.batch_size}",
        "trainer.epochs=1",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        f"trainer.seed={args.seed}",
        *extra,
        *args.overrides,
    ]


def parse_methods_and_budgets(parser, args) -> None:
    """Turn ``--methods a,b`` and ``--budgets 1/4,1/16`` into lists (budgets as floats) and hold
    ``--repeats`` to at least 3 (figures are medians)."""
    from fractions import Fraction

    args.methods = args.methods.split(",")
    args.budgets = [float(Fraction(b)) for b in args.budgets.split(",")]
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (figures are medians)")


def compose_train_job(overrides: Sequence[str]):
    """A training job composed from ``conf/`` exactly as ``recsys-train`` composes it.

    Returns (TrainJobConfig, the composed DictConfig) so results can record the config.
    """
    from hydra import compose, initialize_config_dir

    from recsys.cli.common import CONF_DIR, HYDRA_VERSION_BASE
    from recsys.cli.train import to_job_config  # registers the schemas

    with initialize_config_dir(config_dir=CONF_DIR, version_base=HYDRA_VERSION_BASE):
        cfg = compose("train", overrides=list(overrides))
    return to_job_config(cfg), cfg


class ZipfBatches:
    """Training batches drawn on ``device`` as they are asked for: single-hot Zipf-skewed ranks
    of each feature (exponent 1: log-uniform ranks), uniform dense values, 25% positives."""

    def __init__(self, features, batch: int, device, seed: int = 0) -> None:
        import torch
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        self.kjt = KeyedJaggedTensor
        self.keys = [f.name for f in features]
        self.log_rows = torch.tensor([float(f.num_embeddings) for f in features], device=device).log().unsqueeze(1)  # (F, 1)
        self.batch, self.device = batch, device
        self.lengths = torch.ones(len(features) * batch, dtype=torch.int32, device=device)
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        return 1 << 62  # a stream: every index is a new batch

    def __getitem__(self, _: int):
        import torch

        u = torch.rand(len(self.keys), self.batch, generator=self.gen, device=self.device)  # (F, B)
        ids = (torch.exp(u * self.log_rows) - 1).long()  # (F, B) ranks in [0, rows)
        kjt = self.kjt(keys=self.keys, values=ids.reshape(-1), lengths=self.lengths, stride=self.batch,
                       length_per_key=[self.batch] * len(self.keys))  # known here: no read of the device
        dense = torch.rand(self.batch, 13, generator=self.gen, device=self.device)
        labels = (torch.rand(self.batch, generator=self.gen, device=self.device) < 0.25).float()
        return dense, kjt, labels
