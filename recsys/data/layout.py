"""The on-disk layout of a prepared dataset, shared by ingest, the synthetic generator and the loader.

A prepared dataset is a directory::

    meta.json            DatasetMeta: features, table sizes, rows per split, provenance
    stats.json           ingest only: rows_in, rows_out, bad_rows, reasons, first bad lines
    bayes.json           synthetic only: Bayes-optimal AUC / logloss per split
    train/part-00000.parquet, ...   one directory per split
    valid/...  test/...
    vocab/C1.parquet ... one per sparse feature: columns raw (int64, -1 = missing), count (int64);
                         row r holds the id of frequency rank r (most frequent = 0)

Every shard has the columns ``label`` (int8, 0/1), ``I1..I13`` (float32, already transformed)
and ``C1..C26`` (int32 frequency ranks). A sparse feature with ``k`` kept ids has
``num_embeddings = k + 1`` rows: ranks ``0..k-1`` and one shared out-of-vocabulary row ``k``
for ids below the min-count or beyond the cap. Because ids are frequency ranks, "the hot ids"
of a feature are always a prefix ``[0, K)`` of its table.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pyarrow as pa

from recsys.core.io import read_json, write_json

DENSE_FEATURES: tuple[str, ...] = tuple(f"I{i}" for i in range(1, 14))
SPARSE_FEATURES: tuple[str, ...] = tuple(f"C{i}" for i in range(1, 27))
LABEL = "label"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
MISSING_RAW_ID = -1
LAYOUT_VERSION = 1


def shard_schema(
    dense: tuple[str, ...] = DENSE_FEATURES, sparse: tuple[str, ...] = SPARSE_FEATURES
) -> pa.Schema:
    """Arrow schema of every Parquet shard."""
    return pa.schema(
        [pa.field(LABEL, pa.int8(), nullable=False)]
        + [pa.field(name, pa.float32(), nullable=False) for name in dense]
        + [pa.field(name, pa.int32(), nullable=False) for name in sparse]
    )


VOCAB_SCHEMA = pa.schema(
    [pa.field("raw", pa.int64(), nullable=False), pa.field("count", pa.int64(), nullable=False)]
)


@dataclasses.dataclass
class DatasetMeta:
    """What a reader needs to know about a prepared dataset (``meta.json``).

    Attributes:
        num_embeddings: rows per sparse feature, including the shared OOV row (the last one).
        rows: rows written per split.
        dense_transform: how dense values were transformed (for example ``log1p``).
        source: ``ingest`` or ``synthetic``, plus whatever the producer wants to record.
    """

    num_embeddings: dict[str, int]
    rows: dict[str, int]
    dense_features: list[str] = dataclasses.field(default_factory=lambda: list(DENSE_FEATURES))
    sparse_features: list[str] = dataclasses.field(default_factory=lambda: list(SPARSE_FEATURES))
    dense_transform: str = "log1p"
    source: dict = dataclasses.field(default_factory=dict)
    layout_version: int = LAYOUT_VERSION

    def save(self, root: str | os.PathLike) -> None:
        write_json(Path(root) / "meta.json", dataclasses.asdict(self))

    @classmethod
    def load(cls, root: str | os.PathLike) -> "DatasetMeta":
        path = Path(root) / "meta.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: {root} is not a prepared dataset "
                "(make one with recsys-preprocess or recsys-synth)"
            )
        raw = read_json(path)
        if raw.get("layout_version") != LAYOUT_VERSION:
            raise ValueError(
                f"{path}: layout_version {raw.get('layout_version')!r}, this recsys reads {LAYOUT_VERSION}"
            )
        return cls(**raw)


def split_dir(root: str | os.PathLike, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return Path(root) / split


def shard_path(root: str | os.PathLike, split: str, index: int) -> Path:
    return split_dir(root, split) / f"part-{index:05d}.parquet"


def vocab_path(root: str | os.PathLike, feature: str) -> Path:
    return Path(root) / "vocab" / f"{feature}.parquet"


def list_shards(root: str | os.PathLike, split: str) -> list[Path]:
    return sorted(split_dir(root, split).glob("part-*.parquet"))


def read_vocab_counts(root: str | os.PathLike, feature: str, num_embeddings: int) -> "np.ndarray | None":
    """Training count of each frequency rank of ``feature`` (the OOV row counted as 0), or None
    when the dataset has no vocabulary file for it."""
    import numpy as np
    import pyarrow.parquet as pq

    path = vocab_path(root, feature)
    if not path.exists():
        return None
    counts = pq.read_table(path, columns=["count"]).column("count").to_numpy()
    if counts.size > num_embeddings:
        raise ValueError(f"{path}: {counts.size} vocabulary rows, but meta.json gives {feature} {num_embeddings} rows")
    return np.concatenate([counts, np.zeros(num_embeddings - counts.size, dtype=counts.dtype)])
