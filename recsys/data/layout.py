"""The on-disk layout of a prepared dataset, shared by ingest, the synthetic generator and the loader.

A prepared dataset is a directory::

    meta.json            DatasetMeta: features, table sizes, rows per split, provenance
    stats.json           ingest only: rows_in, rows_out, bad_rows, reasons, first bad lines
    bayes.json           synthetic only: Bayes-optimal AUC / logloss per split
    train/part-00000.parquet, ...   one directory per split
    valid/...  test/...
    vocab/C1.parquet ... one per sparse feature: columns raw (int64, -1 = missing), count (int64);
                         row r holds the id of frequency rank r (most frequent = 0)

Every shard has the columns ``label`` (int8, 0/1), the dense features (float32, already
transformed) and the sparse features (int32 frequency ranks; a multi-hot feature is a
list<int32> column of ranks, one list per row, possibly empty). Feature names and order come
from ``meta.json``: the raw layout (:mod:`recsys.data.schema`) decides them, Criteo's
``I1..I13`` / ``C1..C26`` by default. A sparse feature with ``k`` kept ids has
``num_embeddings = k + 1`` rows: ranks ``0..k-1`` and one shared out-of-vocabulary row ``k``
for ids below the min-count or beyond the cap. Because ids are frequency ranks, "the hot ids"
of a feature are always a prefix ``[0, K)`` of its table.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from recsys.core.io import read_json, write_json

if TYPE_CHECKING:  # the annotation's name only; read_vocab_counts imports numpy when it runs
    import numpy as np

LABEL = "label"  # the label column of a prepared dataset, whatever the raw file called it
SPLITS: tuple[str, ...] = ("train", "valid", "test")
MISSING_RAW_ID = -1
LAYOUT_VERSION = 1


def shard_schema(dense: list[str], sparse: list[str], multi_hot: list[str] = ()) -> pa.Schema:
    """Arrow schema of every Parquet shard; ``multi_hot`` names the sparse features stored as lists."""
    return pa.schema(
        [pa.field(LABEL, pa.int8(), nullable=False)]
        + [pa.field(name, pa.float32(), nullable=False) for name in dense]
        + [pa.field(name, pa.list_(pa.int32()) if name in multi_hot else pa.int32(), nullable=False)
           for name in sparse]
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
        dense_features, sparse_features: column names, in the order batches carry them.
        multi_hot_features: the sparse features stored as lists (bags of ids).
        dense_transform: how dense values were transformed (for example ``log1p``).
        source: ``ingest`` or ``synthetic``, plus whatever the producer wants to record.
    """

    num_embeddings: dict[str, int]
    rows: dict[str, int]
    dense_features: list[str]
    sparse_features: list[str]
    multi_hot_features: list[str] = dataclasses.field(default_factory=list)
    dense_transform: str = "log1p"
    source: dict = dataclasses.field(default_factory=dict)
    layout_version: int = LAYOUT_VERSION

    def shard_schema(self) -> pa.Schema:
        return shard_schema(self.dense_features, self.sparse_features, self.multi_hot_features)

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


def read_vocab_counts(root: str | os.PathLike, feature: str, num_embeddings: int) -> np.ndarray | None:
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
