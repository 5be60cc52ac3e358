"""Full tables: one row per id of the feature's vocabulary (the uncompressed baseline)."""

from __future__ import annotations


from recsys.embeddings.combiners import Single
from recsys.embeddings.plan import FeatureInfo, PlanBuilder, FeaturePlan
from recsys.embeddings.transforms import Identity
from recsys.embeddings.specs import FullSpec


def add_full_table(info: FeatureInfo, dim: int, builder: PlanBuilder, method: str, note: str = "") -> None:
    """A plain full table for ``info`` (also what other methods fall back to for small tables)."""
    slot = builder.slot(builder.table(info.name, info.num_embeddings, dim))
    description = f"{info.num_embeddings} x {dim}" + (f" ({note})" if note else "")
    builder.feature(FeaturePlan(info.name, method, [slot], Identity(), Single(), description))


def compile_features(items: list[tuple[FeatureInfo, FullSpec]], dim: int, builder: PlanBuilder) -> None:
    for info, _ in items:
        add_full_table(info, dim, builder, "full")
