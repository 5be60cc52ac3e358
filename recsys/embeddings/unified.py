"""Unified embedding / feature multiplexing (Coleman et al., NeurIPS 2023).

A group of features (all features by default) shares ONE physical table. Each feature hashes
its ids into it with its own seeds, so the features' collisions are spread over the whole
table instead of each feature colliding only with itself. Multi-probe: the vector is k chunks
of dim/k, each looked up with its own hash and concatenated, so two ids that collide on one
probe almost never collide on all. The table has ``rows`` rows, or ceil(Σ n / compression).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from recsys.embeddings.combiners import Single
from recsys.embeddings.hash import feature_seed_key
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.tables import FBGEMM_DIM_MULTIPLE, PhysicalTable
from recsys.embeddings.transforms import MultiProbeHash


@dataclasses.dataclass
class UnifiedSpec:
    """Args:
    compression: shared rows = ceil(Σ n of the group / compression) (when ``rows`` is unset).
    rows: a fixed size of the shared table instead.
    probes: k chunks of dim/k per vector, each with its own hash.
    seed: base seed of the per-feature, per-probe hashes.
    group: features with the same group name share one table.
    """

    method: str = "unified"
    compression: float = 4.0
    rows: Optional[int] = None
    probes: int = 1
    seed: int = 0
    group: str = "all"

    def __post_init__(self) -> None:
        if self.compression <= 0:
            raise ValueError(f"embedding.compression must be > 0, got {self.compression}")
        if self.probes < 1:
            raise ValueError(f"embedding.probes must be >= 1, got {self.probes}")


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


def tables(items: list[tuple[FeatureInfo, UnifiedSpec]], dim: int) -> tuple[list[PhysicalTable], int]:
    return [
        PhysicalTable(f"unified_{name}", shared_rows(members), chunk_dim(members[0][1], dim))
        for name, members in groups(items).items()
    ], 0


def compile(items: list[tuple[FeatureInfo, UnifiedSpec]], dim: int, builder: PlanBuilder) -> None:
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
