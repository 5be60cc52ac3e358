"""Compositional embeddings from complementary partitions (Shi et al., KDD 2020).

Each id gets a unique combination of rows from k small tables. For k = 2 this is the
quotient-remainder trick: with m collisions, id → (id // m, id % m), a quotient table of
ceil(n/m) rows and a remainder table of m rows; the two rows are combined by element-wise
product (``mult``), sum (``add``) or concatenation (``concat``, each table d/k wide). For k > 2
the partitions are the digits of a mixed-radix number (chained quotient-remainder): k-1
tables of m rows for the low digits, and one of ceil(n / m^(k-1)) rows for the final
quotient; distinct ids still get distinct digit tuples, so every id keeps a unique vector.

For multi-hot bags the combination is taken per id, then pooled: Σᵢ qᵢ ⊙ rᵢ. ``add`` and
``concat`` commute with pooling, so their tables are pooled inside the lookup; ``mult`` slots
are looked up per id. Tables of at most ``threshold`` rows stay full (DLRM's ``qr_threshold``),
and so does any table that the partitions would not make smaller.
"""

from __future__ import annotations

import math

from recsys.embeddings.combiners import Product, Single, Sum
from recsys.embeddings.full import add_full_table
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.specs import FBGEMM_DIM_MULTIPLE, QROperation, QRSpec
from recsys.embeddings.transforms import MixedRadixDigits


def partition_sizes(n: int, collisions: int, partitions: int) -> list[int]:
    """Rows of the k tables, most significant digit first: [ceil(n / m^(k-1)), m, ..., m]."""
    return [math.ceil(n / collisions ** (partitions - 1))] + [collisions] * (partitions - 1)


def slot_dim(spec: QRSpec, dim: int) -> int:
    if spec.operation != QROperation.concat:
        return dim
    if dim % spec.partitions or (dim // spec.partitions) % FBGEMM_DIM_MULTIPLE:
        raise ValueError(
            f"qr concat splits dim {dim} into {spec.partitions} parts: each must be a multiple of "
            f"{FBGEMM_DIM_MULTIPLE}"
        )
    return dim // spec.partitions


def stays_full(n: int, spec: QRSpec) -> bool:
    return n <= spec.threshold or sum(partition_sizes(n, spec.collisions, spec.partitions)) >= n


def combiner(spec: QRSpec):
    """Product or sum of the k partitions' vectors; for ``concat`` they already sit side by side."""
    if spec.operation == QROperation.concat:
        return Single()
    return (Product if spec.operation == QROperation.mult else Sum)(spec.partitions)


def compile_features(items: list[tuple[FeatureInfo, QRSpec]], dim: int, builder: PlanBuilder) -> None:
    for info, spec in items:
        n = info.num_embeddings
        if stays_full(n, spec):
            add_full_table(info, dim, builder, "qr", note="kept full")
            continue
        d = slot_dim(spec, dim)
        per_id = spec.operation == QROperation.mult
        sizes = partition_sizes(n, spec.collisions, spec.partitions)
        slots = [builder.slot(builder.table(f"{info.name}_p{i}", rows, d)) for i, rows in enumerate(sizes)]
        transform = MixedRadixDigits([spec.collisions] * (spec.partitions - 1), per_id=per_id)
        shape = " + ".join(f"{rows} x {d}" for rows in sizes)
        builder.feature(
            FeaturePlan(info.name, "qr", slots, transform, combiner(spec), f"{n} ids -> {shape} ({spec.operation.value})")
        )
