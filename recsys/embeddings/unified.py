"""Unified embedding / feature multiplexing (Coleman et al., NeurIPS 2023).

A group of features (all features by default) shares ONE physical table. Each feature hashes
its ids into it with its own seeds, so the features' collisions are spread over the whole
table instead of each feature colliding only with itself. Multi-probe: the vector is k chunks
of dim/k, each looked up with its own hash and concatenated, so two ids that collide on one
probe almost never collide on all. The table has ``rows`` rows, or ceil(Σ n / compression).
"""

from __future__ import annotations

import math

from recsys.embeddings.combiners import Single
from recsys.embeddings.hashing_trick import feature_seed_key
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.specs import FBGEMM_DIM_MULTIPLE, UnifiedSpec
from recsys.embeddings.transforms import MultiProbeHash


def chunk_dim(spec: UnifiedSpec, dim: int) -> int:
    if dim % spec.probes or (dim // spec.probes) % FBGEMM_DIM_MULTIPLE:
        raise ValueError(f"unified probes={spec.probes} split dim {dim} into parts that are not multiples of 4")
    return dim // spec.probes


def groups(items: list[tuple[FeatureInfo, UnifiedSpec]]) -> dict[str, list[tuple[FeatureInfo, UnifiedSpec]]]:
    out: dict[str, list[tuple[FeatureInfo, UnifiedSpec]]] = {}
    for info, spec in items:
        out.setdefault(spec.group, []).append((info, spec))
    for name, members in out.items():
        shapes = {(s.compression, s.rows, s.probes) for _, s in members}
        if len(shapes) > 1:
            raise ValueError(f"unified group {name!r}: its features disagree on compression/rows/probes: {sorted(shapes, key=str)}")
    return out


def shared_rows(members: list[tuple[FeatureInfo, UnifiedSpec]]) -> int:
    spec = members[0][1]
    if spec.rows is not None:
        return spec.rows
    return max(1, math.ceil(sum(info.num_embeddings for info, _ in members) / spec.compression))


def compile_features(items: list[tuple[FeatureInfo, UnifiedSpec]], dim: int, builder: PlanBuilder) -> None:
    for name, members in groups(items).items():
        rows = shared_rows(members)
        d = chunk_dim(members[0][1], dim)
        table = builder.table(f"unified_{name}", rows, d, shared=True)
        for info, spec in members:
            slots = [builder.slot(table) for _ in range(spec.probes)]
            keys = [feature_seed_key(spec.seed, info.name, p) for p in range(spec.probes)]
            builder.feature(
                FeaturePlan(info.name, "unified", slots, MultiProbeHash(rows, keys), Single(),
                            f"{info.num_embeddings} ids -> shared '{name}' {rows} x {d}, {spec.probes} probe(s)")
            )
