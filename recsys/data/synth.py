"""Synthetic Criteo-shaped datasets with a planted click model and known Bayes-optimal quality.

The full Criteo files are not on every machine, yet embedding compression has to be judged
on data that looks like Criteo: 26 sparse features whose id frequencies are Zipf-like with
10M-id tails, 13 count-like dense features, realistic missing rates and a 25.6% (Kaggle) or
~3% (1TB) click rate. This module streams such a dataset to disk in the prepared layout
(:mod:`recsys.data.layout`), drawing labels from a planted model whose true click probability
is known for every row (:mod:`recsys.data.synth_model` documents the model and its
magnitudes). Because the truth is known, ``bayes.json`` gives the best AUC and logloss any
model can reach per split, so a method's quality is measured as its gap to the optimum.

Written columns are frequency ranks *of the generating distribution* (0 = most probable id),
exactly as ingest ranks observed ids; ``vocab/<C>.parquet`` has one row per rank with a
scrambled 32-bit raw id (-1 for the missing id) and the rank's count in the train split
(on a finite sample, counts of neighbouring tail ranks can be out of order).

Rows are i.i.d. and generated in blocks of ``BLOCK_ROWS`` rows, block ``b`` from its own
random stream ``(seed, b)``, so the output is byte-identical for any ``chunk_rows`` or
``workers`` and a bigger ``rows`` extends the same row sequence. (Identical on one platform:
numpy's ``pow``/``exp`` may round differently on another CPU or libm, moving a rare rank.)
Splits are contiguous: the first rows are train, then valid, then test.

``multi_hot={C3: {min: 1, max: 5}}`` writes C3 as a bag of 1 to 5 ids (a list column): the
row's own C3 id and further ids from C3's distribution, each of them an active feature of the
planted model (:meth:`~recsys.data.synth_model.PlantedModel.logit`), so bags carry signal and
the Bayes figures stay exact. A DLRM sum-pools a bag, so it cannot represent the pairwise
terms *inside* a bag; its gap to the Bayes optimum is a little wider on such data. The intercept is solved on
single-hot rows, so bags move the click rate somewhat off the profile's (``bayes.json`` has
the rate that came out). Memory is bounded by ``chunk_rows`` plus the vocabulary counts
(8 bytes per id) and the valid/test click probabilities kept for their exact AUC.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from recsys.core.io import write_json
from recsys.data.config import BagSize, SynthConfig
from recsys.data.counter_hash import mix_key
from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE
from recsys.data.shards import ShardWriter
from recsys.data.vocab import Vocabulary
from recsys.data.layout import SPLITS, DatasetMeta, vocab_path
from recsys.data.synth_model import (
    DENSE_MISSING,
    DENSE_SHAPES,
    HEAD_ROWS,
    POSITIVE_RATES,
    SPARSE_MISSING,
    FeatureSpace,
    ModelMagnitudes,
    PlantedModel,
    Profile,
    profile_cardinalities,
    profile_exponents,
    scrambled_ids,
    sigmoid,
)
from recsys.core.metrics import auc as exact_auc, auc_from_counts

BLOCK_ROWS = 1 << 14  # rows per random stream; fixes the output independently of chunk_rows
EXACT_AUC_MAX_ROWS = 1 << 24  # valid/test splits up to this size get a sort-based exact AUC
HISTOGRAM_BINS = 1 << 21  # logit bins of the streaming AUC (train, and larger splits)
HISTOGRAM_RANGE = 20.0  # bins cover logits in [-20, 20]; logits beyond fall in the edge bins


def _validate(cfg: SynthConfig) -> Profile:
    if cfg.output in ("", "???"):
        raise ValueError("output: set the directory to write the dataset to")
    try:
        profile = Profile(cfg.profile)
    except ValueError:
        raise ValueError(
            f"profile: {cfg.profile!r} is not one of {[p.value for p in Profile]}"
        ) from None
    if cfg.rows < 1:
        raise ValueError(f"rows must be >= 1, got {cfg.rows}")
    for name in ("valid_fraction", "test_fraction"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.valid_fraction + cfg.test_fraction >= 1.0:
        raise ValueError("valid_fraction + test_fraction must be < 1 (train would be empty)")
    if cfg.seed < 0 or (cfg.model_seed is not None and cfg.model_seed < 0):
        raise ValueError("seed and model_seed must be >= 0")
    if not cfg.cardinality_scale > 0:
        raise ValueError(f"cardinality_scale must be > 0, got {cfg.cardinality_scale}")
    if cfg.max_cardinality is not None and cfg.max_cardinality < 2:
        raise ValueError(f"max_cardinality must be >= 2, got {cfg.max_cardinality}")
    if cfg.rows_per_shard < 1 or cfg.chunk_rows < 1:
        raise ValueError("rows_per_shard and chunk_rows must be >= 1")
    if cfg.workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = one per CPU), got {cfg.workers}")
    for name, size in cfg.multi_hot.items():
        if name not in CRITEO_CATEGORICAL:
            raise ValueError(f"multi_hot.{name}: not a sparse feature of the profile ({CRITEO_CATEGORICAL[0]}..{CRITEO_CATEGORICAL[-1]})")
        if not 1 <= size.min <= size.max:
            raise ValueError(f"multi_hot.{name}: bag sizes need 1 <= min <= max, got min={size.min} max={size.max}")
    return profile


def split_rows(cfg: SynthConfig) -> dict[str, int]:
    """Rows per split: valid and test are rounded shares of ``rows``, train the rest."""
    valid, test = round(cfg.rows * cfg.valid_fraction), round(cfg.rows * cfg.test_fraction)
    if cfg.rows - valid - test < 1:
        raise ValueError(f"rows={cfg.rows} leaves no train rows after valid/test")
    return {"train": cfg.rows - valid - test, "valid": valid, "test": test}


def feature_space(cfg: SynthConfig) -> FeatureSpace:
    """The feature distributions a config describes (profile, scale and cap applied)."""
    profile = _validate(cfg)
    base = profile_cardinalities(profile)
    cards = tuple(max(2, round(n * cfg.cardinality_scale)) for n in base)
    if cfg.max_cardinality is not None:
        cards = tuple(min(n, cfg.max_cardinality) for n in cards)
    return FeatureSpace(
        cardinalities=cards,
        exponents=profile_exponents(profile, base),
        missing=tuple(SPARSE_MISSING[f] for f in CRITEO_CATEGORICAL),
        dense_missing=tuple(DENSE_MISSING[f] for f in CRITEO_DENSE),
        dense_shapes=tuple(DENSE_SHAPES[f] for f in CRITEO_DENSE),
    )


def planted_model(cfg: SynthConfig) -> PlantedModel:
    """The planted model a config describes (no rows are written); takes a second or two."""
    space = feature_space(cfg)
    magnitudes = ModelMagnitudes(
        latent_dim=cfg.latent_dim,
        bias_std=cfg.bias_std,
        latent_std=cfg.latent_std,
        dense_std=cfg.dense_std,
        dense_latent_std=cfg.dense_latent_std,
        effect_half_frequency=cfg.effect_half_frequency,
    )
    profile = Profile(cfg.profile)
    rate = POSITIVE_RATES[profile] if cfg.positive_rate is None else cfg.positive_rate
    seed = cfg.seed if cfg.model_seed is None else cfg.model_seed
    return PlantedModel(space, magnitudes, rate, seed)


# ---------------------------------------------------------------- Bayes-optimal metrics


class BayesAccumulator:
    """Streams one split's true logits and labels into positives, logloss and AUC.

    AUC is exact (sort-based, ties as half) when the split has at most ``exact_max_rows``
    rows; beyond that it comes from per-label histograms of the logit over
    ``HISTOGRAM_BINS`` bins: pairs in the same bin count as half, an error far below 1e-4.
    """

    def __init__(self, rows: int, exact_max_rows: int = EXACT_AUC_MAX_ROWS) -> None:
        self.rows, self.positives, self.log_loss_sum = 0, 0, 0.0
        self.exact = rows <= exact_max_rows
        if self.exact:
            self._logits = np.empty(rows, np.float64)
            self._labels = np.empty(rows, np.int8)
        else:
            self._hist = np.zeros((2, HISTOGRAM_BINS), np.int64)  # (label, bin)

    def update(self, logit: np.ndarray, label: np.ndarray) -> None:
        n = len(label)
        if self.exact:
            self._logits[self.rows : self.rows + n] = logit
            self._labels[self.rows : self.rows + n] = label
        else:
            bins = histogram_bins(logit)
            for value in (0, 1):
                self._hist[value] += np.bincount(bins[label == value], minlength=HISTOGRAM_BINS)
        self.rows += n
        self.positives += int(label.sum())
        # -log p = softplus(-z), -log(1-p) = softplus(z)
        self.log_loss_sum += float(np.logaddexp(0.0, np.where(label == 1, -logit, logit)).sum())

    def result(self) -> dict:
        if self.rows == 0:
            return {"rows": 0, "positives": 0, "positive_rate": None, "bayes_auc": None,
                    "bayes_logloss": None, "auc_method": None}  # fmt: skip
        if self.exact:
            value = exact_auc(self._logits[: self.rows], self._labels[: self.rows])
        else:
            value = auc_from_counts(self._hist[1], self._hist[0])
        return {
            "rows": self.rows,
            "positives": self.positives,
            "positive_rate": self.positives / self.rows,
            "bayes_auc": None if math.isnan(value) else value,
            "bayes_logloss": self.log_loss_sum / self.rows,
            "auc_method": "exact" if self.exact else f"histogram({HISTOGRAM_BINS} logit bins)",
        }


def histogram_bins(logit: np.ndarray) -> np.ndarray:
    """Bin index of each logit on a uniform grid over [-HISTOGRAM_RANGE, HISTOGRAM_RANGE]."""
    width = 2 * HISTOGRAM_RANGE / HISTOGRAM_BINS
    return np.clip(((logit + HISTOGRAM_RANGE) / width).astype(np.int64), 0, HISTOGRAM_BINS - 1)


# ---------------------------------------------------------------- writing


class VocabCounter:
    """Train-split count of every rank of every sparse feature (8 bytes per id).

    Ranks below ``HEAD_ROWS`` (nearly all occurrences) are counted by one ``bincount`` over
    all features; the rarer tail ranks are scatter-added.
    """

    def __init__(self, cardinalities: tuple[int, ...]) -> None:
        self.counts = [np.zeros(n, np.int64) for n in cardinalities]
        self._heads = np.minimum(cardinalities, HEAD_ROWS)  # (F,)
        self._offsets = np.concatenate([[0], np.cumsum(self._heads)[:-1]])  # (F,)

    def update(self, sparse: np.ndarray, extra: dict[int, np.ndarray]) -> None:
        """sparse: (N, 26) int32 ranks; extra: feature index -> (N, L) further bag ranks (-1 = none)."""
        for f, ranks in extra.items():
            np.add.at(self.counts[f], ranks[ranks >= 0], 1)
        in_head = sparse < self._heads  # (N, F)
        spill = int(self._heads.sum())  # one extra bin collects tail occurrences
        index = np.where(in_head, self._offsets + sparse, spill)  # (N, F)
        head_counts = np.bincount(index.ravel(), minlength=spill + 1)
        for f, counts in enumerate(self.counts):
            start = self._offsets[f]
            counts[: self._heads[f]] += head_counts[start : start + self._heads[f]]
            if len(counts) > self._heads[f]:
                np.add.at(counts, sparse[~in_head[:, f], f], 1)

    def write(self, root: Path, space: FeatureSpace, seed: int) -> None:
        vocab_path(root, CRITEO_CATEGORICAL[0]).parent.mkdir(parents=True, exist_ok=True)
        for f, (name, counts) in enumerate(zip(CRITEO_CATEGORICAL, self.counts)):
            raw = scrambled_ids(mix_key(seed, 4, f), np.arange(len(counts)))
            missing = space.missing_ranks[f]
            if missing < len(counts):
                raw[missing] = -1
            Vocabulary(raw=raw, count=counts).save(vocab_path(root, name))


# ---------------------------------------------------------------- generation


def draw_block(model: PlantedModel, seed: int, block: int, bags: dict[int, BagSize]) -> tuple:
    """The random draws of rows ``[block * BLOCK_ROWS, (block + 1) * BLOCK_ROWS)``.

    A multi-hot feature's bag is the row's id of that feature plus ``size - 1`` further ids
    from the same distribution (drawn after everything else, so single-hot rows do not change
    when a feature becomes multi-hot).

    Returns:
        dense (BLOCK_ROWS, 13) float32, sparse (BLOCK_ROWS, 26) int32, label uniforms
        (BLOCK_ROWS,), and feature index -> (BLOCK_ROWS, max - 1) further ranks (-1 = none).
    """
    rng = np.random.default_rng([seed, block])
    dense, sparse = model.space.sample(rng, BLOCK_ROWS)
    u_label = rng.random(BLOCK_ROWS)
    extra = {}
    for f, size in sorted(bags.items()):
        sizes = rng.integers(size.min, size.max + 1, BLOCK_ROWS)  # (B,)
        ranks = model.space.sparse_ranks(rng.random((BLOCK_ROWS, size.max - 1)), feature=f)  # (B, L)
        extra[f] = np.where(np.arange(size.max - 1) < (sizes - 1)[:, None], ranks, -1).astype(np.int32)
    return dense, sparse, u_label, extra


def _chunks(total: int, chunk_rows: int) -> list[tuple[int, int]]:
    """(first block, rows) of each generation step; chunks are whole blocks except the last."""
    step = max(1, math.ceil(chunk_rows / BLOCK_ROWS)) * BLOCK_ROWS
    return [(start // BLOCK_ROWS, min(step, total - start)) for start in range(0, total, step)]


def generate_chunk(model: PlantedModel, seed: int, first_block: int, rows: int, bags: dict[int, BagSize]) -> tuple:
    """Rows ``[first_block * BLOCK_ROWS, first_block * BLOCK_ROWS + rows)`` of the dataset.

    Draws come per block (fixing the output for any chunking); the model then runs on the
    whole chunk, its arithmetic being row-wise.

    Returns:
        dense (N, 13) float32, sparse (N, 26) int32, logit (N,) float64, label (N,) int8, and
        feature index -> (N, L) further bag ranks (-1 = none).
    """
    blocks = [draw_block(model, seed, first_block + i, bags) for i in range(math.ceil(rows / BLOCK_ROWS))]
    dense, sparse, u_label = (np.concatenate([b[i] for b in blocks])[:rows] for i in range(3))
    extra = {f: np.concatenate([b[3][f] for b in blocks])[:rows] for f in bags}
    logit = model.logit(dense, sparse, extra)
    return dense, sparse, logit, (u_label < sigmoid(logit)).astype(np.int8), extra


def _generated(
    model: PlantedModel, seed: int, chunks: list[tuple[int, int]], workers: int, bags: dict[int, BagSize]
) -> Iterator[tuple]:
    """Generated chunks in order; with ``workers > 1`` they come from a thread pool.

    Threads suffice: numpy releases the GIL inside its array operations, and so does Arrow
    while the main thread writes Parquet. At most ``2 * workers`` chunks are in flight,
    which bounds memory.
    """
    if workers <= 1 or len(chunks) <= 1:
        for first_block, rows in chunks:
            yield generate_chunk(model, seed, first_block, rows, bags)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="recsys-synth") as pool:
        pending: collections.deque[Future] = collections.deque()
        for first_block, rows in chunks:
            pending.append(pool.submit(generate_chunk, model, seed, first_block, rows, bags))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _table(schema: pa.Schema, label: np.ndarray, dense: np.ndarray, sparse: np.ndarray,
           extra: dict[int, np.ndarray]) -> pa.Table:
    """label (N,) int8, dense (N, 13) float32, sparse (N, 26) int32 and further bag ranks
    (feature index -> (N, L), -1 = none) -> a shard table; a bag lists its first id first."""
    columns = [pa.array(label), *(pa.array(dense[:, j]) for j in range(dense.shape[1]))]
    for f in range(sparse.shape[1]):
        if f not in extra:
            columns.append(pa.array(sparse[:, f]))
            continue
        bag = np.concatenate([sparse[:, f : f + 1], extra[f]], axis=1)  # (N, 1 + L)
        present = bag >= 0
        offsets = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32)
        columns.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(bag[present])))
    return pa.Table.from_arrays(columns, schema=schema)


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # respects taskset / container CPU sets (Linux)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def generate(cfg: SynthConfig, progress: bool = True) -> dict:
    """Write a synthetic dataset to ``cfg.output``; return the summary written to ``bayes.json``.

    The summary has, per split, ``rows``, ``positives``, ``positive_rate``, ``bayes_auc`` and
    ``bayes_logloss`` (AUC / logloss of the true click probability), plus the planted model's
    intercept and generation speed. ``meta.json`` is written last, so its presence marks a
    complete dataset.
    """
    started = time.perf_counter()
    root = Path(cfg.output)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"output {root} exists and is not empty; choose a new directory")
    model = planted_model(cfg)
    rows = split_rows(cfg)
    root.mkdir(parents=True, exist_ok=True)
    bags = {CRITEO_CATEGORICAL.index(name): size for name, size in cfg.multi_hot.items()}
    meta = DatasetMeta(
        num_embeddings={f: n + 1 for f, n in zip(CRITEO_CATEGORICAL, model.space.cardinalities)},
        rows=rows, dense_features=list(CRITEO_DENSE), sparse_features=list(CRITEO_CATEGORICAL),
        multi_hot_features=[f for f in CRITEO_CATEGORICAL if f in cfg.multi_hot],
        source={"kind": "synthetic", "generator": "recsys.data.synth", **dataclasses.asdict(cfg),
                "model_seed": model.seed},  # fmt: skip
    )
    schema = meta.shard_schema()
    writers = {s: ShardWriter(root, s, cfg.rows_per_shard, schema) for s in SPLITS}
    bayes = {s: BayesAccumulator(rows[s]) for s in SPLITS}
    counter = VocabCounter(model.space.cardinalities)
    bounds = np.cumsum([0] + [rows[s] for s in SPLITS])  # split s holds rows [bounds[i], bounds[i+1])

    chunks = _chunks(cfg.rows, cfg.chunk_rows)
    workers = cfg.workers or _available_cpus()
    generated = _generated(model, cfg.seed, chunks, workers, bags)
    if progress:
        generated = tqdm(generated, total=len(chunks), desc="recsys-synth", unit="chunk")
    for (first_block, n), (dense, sparse, logit, label, extra) in zip(chunks, generated):
        start = first_block * BLOCK_ROWS
        for i, split in enumerate(SPLITS):
            lo, hi = max(bounds[i] - start, 0), min(bounds[i + 1] - start, n)
            if lo >= hi:
                continue
            part = {f: ranks[lo:hi] for f, ranks in extra.items()}
            writers[split].write(_table(schema, label[lo:hi], dense[lo:hi], sparse[lo:hi], part))
            bayes[split].update(logit[lo:hi], label[lo:hi])
            if split == "train":
                counter.update(sparse[lo:hi], part)
    for writer in writers.values():
        writer.close()
    counter.write(root, model.space, model.seed)

    elapsed = time.perf_counter() - started
    summary = {s: bayes[s].result() for s in SPLITS}
    summary["planted_model"] = {
        "intercept": model.intercept,
        "target_positive_rate": model.positive_rate,
        "cardinalities": dict(zip(CRITEO_CATEGORICAL, model.space.cardinalities)),
        "exponents": dict(zip(CRITEO_CATEGORICAL, model.space.exponents)),
        **dataclasses.asdict(model.magnitudes),
    }
    summary["generation"] = {"seconds": elapsed, "rows_per_second": cfg.rows / elapsed}
    write_json(root / "bayes.json", summary)
    meta.save(root)
    return summary
