"""Id frequency counting and frequency-ranked vocabularies.

A vocabulary maps a feature's raw ids to dense rows ``0..k-1`` ordered by how often each id
occurs in the training split (most frequent first, ties by raw id ascending, so the result
never depends on input order or chunking), plus one shared out-of-vocabulary row ``k``.
The missing value (``MISSING_RAW_ID``) is an id like any other.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.data.layout import VOCAB_SCHEMA


class FrequencyCounter:
    """Count occurrences of int64 ids chunk by chunk, with memory proportional to the vocabulary.

    Each ``add`` hashes its chunk down to (id, count) pairs. Those pairs wait in a list and
    are merged into the running total only when they outweigh it, so the total work stays
    ``O(n log n)``-like (geometric merging) instead of re-merging the whole table per chunk.
    """

    def __init__(self) -> None:
        self._ids = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        pairs = pc.value_counts(pa.array(ids, type=pa.int64()))
        self._pending.append(
            (pairs.field("values").to_numpy(), pairs.field("counts").to_numpy().astype(np.int64))
        )
        self._pending_size += len(pairs)
        if self._pending_size > max(len(self._ids), 1 << 16):
            self._merge()

    def _merge(self) -> None:
        ids = np.concatenate([self._ids, *(p[0] for p in self._pending)])
        counts = np.concatenate([self._counts, *(p[1] for p in self._pending)])
        summed = pa.table({"id": ids, "count": counts}).group_by("id").aggregate([("count", "sum")])
        self._ids = summed.column("id").to_numpy()
        self._counts = summed.column("count_sum").to_numpy()
        self._pending, self._pending_size = [], 0

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, counts), each id once, in no particular order."""
        if self._pending:
            self._merge()
        return self._ids, self._counts


@dataclasses.dataclass
class Vocabulary:
    """Kept raw ids in rank order (row r = rank r) and their training counts."""

    raw: np.ndarray
    count: np.ndarray

    @property
    def num_embeddings(self) -> int:
        """Kept ids plus the shared OOV row."""
        return len(self.raw) + 1

    @property
    def oov_row(self) -> int:
        return len(self.raw)

    @classmethod
    def build(
        cls, ids: np.ndarray, counts: np.ndarray, min_count: int = 1, max_rows: int | None = None
    ) -> "Vocabulary":
        """Rank by count descending then raw id ascending; drop ids under ``min_count``; cap.

        ``max_rows`` caps the kept ids (the OOV row comes on top), keeping the most frequent.
        """
        order = np.lexsort((ids, -counts))
        order = order[counts[order] >= min_count]
        if max_rows is not None:
            order = order[:max_rows]
        return cls(raw=ids[order].astype(np.int64), count=counts[order].astype(np.int64))

    def lookup(self) -> "VocabLookup":
        return VocabLookup(self)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"raw": self.raw, "count": self.count}, schema=VOCAB_SCHEMA), path)


class VocabLookup:
    """Map raw ids to ranks with a hash index built once; ids not kept go to the OOV row."""

    def __init__(self, vocab: Vocabulary) -> None:
        self._index = pd.Index(vocab.raw)
        self.oov_row = vocab.oov_row

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, int]:
        """(int32 rows, number of ids that went to the OOV row)."""
        rows = self._index.get_indexer(ids)
        missing = rows < 0
        n_oov = int(missing.sum())
        if n_oov:
            rows[missing] = self.oov_row
        return rows.astype(np.int32), n_oov
