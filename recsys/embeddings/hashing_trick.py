"""The hashing trick (Weinberger et al., 2009): each id is hashed into a table of m < n rows.

Colliding ids share a row. Rows per table come from ``rows`` or from ``compression``
(m = ceil(n / compression)); tables of at most ``threshold`` rows, or already no larger than m,
stay full. ``hash=seeded`` uses a seeded MurmurHash3 finalizer, with a different seed per
feature; ``hash=modulo`` is plain ``id mod m``, which, since ids are frequency ranks, gives
the m most frequent ids rows of their own and folds the tail onto them.
"""

from __future__ import annotations

import math
import zlib

from recsys.embeddings.combiners import Single
from recsys.embeddings.full import add_full_table
from recsys.embeddings.hash_functions import seed_key
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.transforms import HashRows
from recsys.embeddings.specs import HashKind, HashSpec


def hashed_rows(n: int, spec: HashSpec) -> int:
    """Rows of the feature's table: m, or n when the table stays full."""
    if n <= spec.threshold:
        return n
    m = spec.rows if spec.rows is not None else math.ceil(n / spec.compression)
    return max(1, min(n, m))


def feature_seed_key(seed: int, feature: str, probe: int = 0) -> int:
    """A hash key distinct per (seed, feature, probe)."""
    return seed_key(zlib.crc32(f"{seed}/{feature}/{probe}".encode()))


def compile_features(items: list[tuple[FeatureInfo, HashSpec]], dim: int, builder: PlanBuilder) -> None:
    for info, spec in items:
        n = info.num_embeddings
        m = hashed_rows(n, spec)
        if m == n:
            add_full_table(info, dim, builder, "hash", note="kept full")
            continue
        slot = builder.slot(builder.table(info.name, m, dim))
        transform = HashRows(m, feature_seed_key(spec.seed, info.name), modulo=spec.hash == HashKind.modulo)
        builder.feature(FeaturePlan(info.name, "hash", [slot], transform, Single(), f"{n} ids -> {m} x {dim} ({spec.hash.value})"))
