"""The hashing trick (Weinberger et al., 2009): each id is hashed into a table of m < n rows.

Colliding ids share a row. Rows per table come from ``rows`` or from ``compression``
(m = ceil(n / compression)); tables of at most ``threshold`` rows, or already no larger than m,
stay full. ``hash=seeded`` uses a seeded MurmurHash3 finalizer, with a different seed per
feature; ``hash=modulo`` is plain ``id mod m``, which, since ids are frequency ranks, gives
the m most frequent ids rows of their own and folds the tail onto them.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import zlib
from typing import Optional

from recsys.embeddings.combiners import Single
from recsys.embeddings.full import add_full_table
from recsys.embeddings.hashing import seed_key
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.tables import PhysicalTable
from recsys.embeddings.transforms import HashRows


class HashKind(str, enum.Enum):
    seeded = "seeded"
    modulo = "modulo"


@dataclasses.dataclass
class HashSpec:
    """Args:
    compression: m = ceil(n / compression) rows per hashed table (when ``rows`` is unset).
    rows: a fixed m for every hashed table instead.
    hash: ``seeded`` hash or plain ``modulo``.
    seed: base seed; each feature's hash is seeded with (seed, feature name).
    threshold: tables of at most this many rows stay full.
    """

    method: str = "hash"
    compression: float = 4.0
    rows: Optional[int] = None
    hash: HashKind = HashKind.seeded
    seed: int = 0
    threshold: int = 0

    def __post_init__(self) -> None:
        self.hash = HashKind(self.hash)
        if self.compression < 1:
            raise ValueError(f"embedding.compression must be >= 1, got {self.compression}")
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"embedding.rows must be >= 1, got {self.rows}")


def hashed_rows(n: int, spec: HashSpec) -> int:
    """Rows of the feature's table: m, or n when the table stays full."""
    if n <= spec.threshold:
        return n
    m = spec.rows if spec.rows is not None else math.ceil(n / spec.compression)
    return max(1, min(n, m))


def feature_seed_key(seed: int, feature: str, probe: int = 0) -> int:
    """A hash key distinct per (seed, feature, probe)."""
    return seed_key(zlib.crc32(f"{seed}/{feature}/{probe}".encode()))


def tables(items: list[tuple[FeatureInfo, HashSpec]], dim: int) -> tuple[list[PhysicalTable], int]:
    return [PhysicalTable(info.name, hashed_rows(info.num_embeddings, spec), dim) for info, spec in items], 0


def compile(items: list[tuple[FeatureInfo, HashSpec]], dim: int, builder: PlanBuilder) -> None:
    for info, spec in items:
        n = info.num_embeddings
        m = hashed_rows(n, spec)
        if m == n:
            add_full_table(info, dim, builder, "hash", note="kept full")
            continue
        slot = builder.slot(builder.table(info.name, m, dim))
        transform = HashRows(m, feature_seed_key(spec.seed, info.name), modulo=spec.hash == HashKind.modulo)
        builder.feature(FeaturePlan(info.name, "hash", [slot], transform, Single(), f"{n} ids -> {m} x {dim} ({spec.hash.value})"))
