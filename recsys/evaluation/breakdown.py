"""Per-feature breakdowns: quality by id frequency, OOV rates, and embedding bytes per feature.

Compression hurts unevenly. The hashing trick and its relatives collide rare ids with frequent
ones, mixed dimensions give rare ids narrow vectors, pruning sends them to a shared row: a
compressed model that matches the full one on the head of a feature's vocabulary can lose on
its tail, and the global AUC hides it. So every test row is bucketed, per feature, by the
training frequency of its id:

- ``head``: the most frequent ids that together make up the first 50% of training occurrences,
- ``torso``: the next ids up to 90%,
- ``tail``: every other kept id,
- ``oov``: the shared out-of-vocabulary row (ids below the min-count or beyond the cap).

Ids are frequency ranks (see :mod:`recsys.data.layout`), so the buckets are rank ranges. A
dataset without vocabulary files has no counts; its ids are then taken as equally frequent
(head = the first 50% of ranks, torso up to 90%), which the report states.

Evaluation scores a split in file order (no shuffling), so the i-th prediction is the i-th row
of the split's shards; :func:`read_split_columns` reads the ids back in that order and the
labels with them, which lets the caller check that predictions and rows line up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from recsys.core.metrics import SortedScores
from recsys.data.layout import DatasetMeta, list_shards, read_vocab_counts

BUCKETS: tuple[str, ...] = ("head", "torso", "tail", "oov")
HEAD_SHARE, TORSO_SHARE = 0.5, 0.9
_EPS = 1e-7


@dataclasses.dataclass
class BucketEdges:
    """Rank ranges of one feature: head ``[0, head_end)``, torso ``[head_end, torso_end)``, tail
    ``[torso_end, oov_row)``, OOV ``oov_row``. ``basis`` says what frequencies defined them."""

    feature: str
    head_end: int
    torso_end: int
    oov_row: int
    basis: str  # "training counts" or "uniform (no vocabulary counts)"

    def assign(self, ids: np.ndarray) -> np.ndarray:
        """Bucket index (into :data:`BUCKETS`) of each id. (N,) -> (N,) int64"""
        return np.searchsorted(np.array([self.head_end, self.torso_end, self.oov_row]), ids, side="right")


def bucket_edges(feature: str, counts: np.ndarray | None, num_embeddings: int) -> BucketEdges:
    """Head/torso/tail edges of a feature from its training count per rank (the OOV row last)."""
    kept = num_embeddings - 1
    basis = "training counts"
    if counts is None or kept == 0 or counts[:kept].sum() <= 0:
        counts, basis = np.ones(max(kept, 0)), "uniform (no vocabulary counts)"
    share = np.cumsum(counts[:kept], dtype=np.float64)
    share /= share[-1] if kept else 1.0
    head_end = int(np.searchsorted(share, HEAD_SHARE, side="left")) + 1 if kept else 0
    torso_end = max(head_end, int(np.searchsorted(share, TORSO_SHARE, side="left")) + 1) if kept else 0
    return BucketEdges(feature, min(head_end, kept), min(torso_end, kept), kept, basis)


def dataset_bucket_edges(dataset: str | Path, meta: DatasetMeta) -> dict[str, BucketEdges]:
    return {
        f: bucket_edges(f, read_vocab_counts(dataset, f, meta.num_embeddings[f]), meta.num_embeddings[f])
        for f in meta.sparse_features
    }


def read_split_columns(dataset: str | Path, split: str, rows: int, columns: list[str]) -> dict[str, np.ndarray]:
    """The first ``rows`` rows of ``columns`` of a split, in file order (the order evaluation scores).

    Raises:
        ValueError: the split has fewer rows than asked for.
    """
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    have = 0
    for path in list_shards(dataset, split):
        if have >= rows:
            break
        table = pq.read_table(path, columns=columns)
        take = min(table.num_rows, rows - have)
        for c in columns:
            parts[c].append(table.column(c).to_numpy()[:take])
        have += take
    if have < rows:
        raise ValueError(f"{dataset} split {split!r} has {have:,} rows, but {rows:,} predictions were saved")
    return {c: np.concatenate(v) if v else np.empty(0) for c, v in parts.items()}


@dataclasses.dataclass
class GroupMetrics:
    """AUC, logloss and counts of each group of rows (groups with one class get AUC NaN)."""

    rows: list[int]
    positives: list[int]
    auc: list[float]
    logloss: list[float]


class ScoreIndex:
    """One model's rows sorted by score once (:class:`~recsys.core.metrics.SortedScores`), for
    the AUC and logloss of many groupings of them (each feature's frequency buckets)."""

    def __init__(self, p: np.ndarray, y: np.ndarray, order: np.ndarray | None = None) -> None:
        p = np.asarray(p, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.sorted = SortedScores(p, self.y, order)
        q = np.clip(p, _EPS, 1 - _EPS)
        self.row_loss = -(self.y * np.log(q) + (1 - self.y) * np.log1p(-q))  # (N,)

    def grouped(self, groups: np.ndarray, n_groups: int) -> GroupMetrics:
        """Metrics of each group; ``groups`` (N,) holds each row's group in [0, n_groups)."""
        groups = np.asarray(groups)
        rows = np.bincount(groups, minlength=n_groups)
        positives = np.bincount(groups, weights=self.y, minlength=n_groups)
        loss = np.bincount(groups, weights=self.row_loss, minlength=n_groups)
        auc = self.sorted.auc_by_group(groups, n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            logloss = np.where(rows > 0, loss / np.maximum(rows, 1), np.nan)
        return GroupMetrics(rows.tolist(), positives.astype(np.int64).tolist(), auc.tolist(), logloss.tolist())


def feature_memory(embedding) -> list[dict]:
    """Embedding bytes of each logical feature of an embedding collection's plan (an
    :class:`~recsys.embeddings.plan.EmbeddingPlan`), with its table optimizer's state.

    A feature owns the weights and optimizer state of the physical tables it reads and its
    combiner's weights; a table that several features share (unified embedding) is split
    evenly among them, so the per-feature bytes add up to the plan's total.
    """
    plan = embedding.plan
    memory = embedding.memory()
    readers: dict[int, set[str]] = {}
    for fp in plan.features:
        for s in fp.slots:
            readers.setdefault(plan.slots[s].table, set()).add(fp.name)
    out = []
    for fp in plan.features:
        tables = sorted({plan.slots[s].table for s in fp.slots})
        weight = sum(memory.tables[t].weight_bytes / len(readers[t]) for t in tables)
        state = sum(memory.tables[t].optimizer_bytes / len(readers[t]) for t in tables)
        combiner = 4 * sum(p.numel() for p in fp.combiner.parameters())
        out.append(
            {
                "feature": fp.name,
                "method": fp.method,
                "description": fp.description,
                "tables": [memory.tables[t].table for t in tables],
                "shared": any(len(readers[t]) > 1 for t in tables),
                "weight_bytes": weight,
                "optimizer_bytes": state,
                "combiner_bytes": combiner,
                "total_bytes": weight + state + combiner,
            }
        )
    return out
