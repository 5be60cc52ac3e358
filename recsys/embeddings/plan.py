"""The plan: how a model's logical features compile to lookup slots on plain physical tables.

A *physical table* is rows × dim of float32 (a torchrec/FBGEMM table). A *slot* is one lookup
into a physical table (an FBGEMM "feature"): several slots may read the same table (unified
embedding's shared table, its probes). A *feature plan* says, for one logical feature, which
slots it reads, the id transform that feeds them and the combiner that turns their vectors into
one ``dim``-wide vector. Methods only ever add tables, slots and feature plans through
:class:`PlanBuilder`, so the one table-batched lookup and its fused optimizer serve every
method's tables alike. (Sharding and export are not built yet; the design is that they too
will see only plain tables.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
from torch import nn

from recsys.embeddings.memory import MemoryReport
from recsys.embeddings.tables import PhysicalTable
from recsys.embeddings.specs import TableOptimizer


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """What a method may know about a logical feature.

    Attributes:
        name: the feature (``C1``..``C26``).
        num_embeddings: rows of its full table (vocabulary + OOV row); ids are frequency ranks.
        counts: optional (num_embeddings,) training-set frequency of each rank (from the
            vocabulary files); mixed-dimension blocks use it for block popularity.
    """

    name: str
    num_embeddings: int
    counts: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)

    @functools.cached_property
    def cumulative_counts(self) -> np.ndarray:
        """(num_embeddings + 1,) training counts of ranks below each rank, so a rank range's
        count is one subtraction; computed once (a budget solve compiles hundreds of plans)."""
        if self.counts is None:
            raise ValueError(f"feature {self.name} has no vocabulary counts")
        return np.concatenate([[0], np.cumsum(np.asarray(self.counts, dtype=np.int64))])


@dataclasses.dataclass(frozen=True)
class Slot:
    """One lookup into physical table ``table`` (whose width is ``dim``)."""

    table: int
    dim: int


@dataclasses.dataclass
class FeaturePlan:
    name: str
    method: str
    slots: list[int]
    transform: nn.Module
    combiner: nn.Module
    description: str


@dataclasses.dataclass
class EmbeddingPlan:
    """All physical tables and slots of a model, and one :class:`FeaturePlan` per logical feature."""

    dim: int
    tables: list[PhysicalTable]
    slots: list[Slot]
    features: list[FeaturePlan]
    # the default method's spec as compiled (after a budget set its size knob)
    default_spec: Optional[object] = None

    def memory(self, optimizer: TableOptimizer) -> MemoryReport:
        extra = sum(p.numel() for f in self.features for p in f.combiner.parameters())
        return MemoryReport.of(self.tables, optimizer, combiner_parameters=extra)

    def describe(self) -> list[str]:
        return [f"{f.name}: {f.method} {f.description}" for f in self.features]


class PlanBuilder:
    """Collects tables, slots and feature plans while methods compile their features."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.tables: list[PhysicalTable] = []
        self.slots: list[Slot] = []
        self._features: dict[str, FeaturePlan] = {}
        self._by_name: dict[str, int] = {}

    def table(self, name: str, rows: int, dim: int, shared: bool = False, init_rows: Optional[int] = None) -> int:
        """Index of a new physical table, or of the existing one of that name when ``shared``."""
        if name in self._by_name:
            index = self._by_name[name]
            existing = self.tables[index]
            if not shared:
                raise ValueError(f"physical table {name!r} is defined twice")
            if (existing.num_embeddings, existing.dim) != (rows, dim):
                raise ValueError(
                    f"shared table {name!r} is {existing.num_embeddings} x {existing.dim}, "
                    f"but a feature asks for {rows} x {dim}"
                )
            return index
        self.tables.append(PhysicalTable(name, rows, dim, init_rows))
        self._by_name[name] = len(self.tables) - 1
        return len(self.tables) - 1

    def slot(self, table: int) -> int:
        self.slots.append(Slot(table, self.tables[table].dim))
        return len(self.slots) - 1

    def feature(self, plan: FeaturePlan) -> None:
        if plan.name in self._features:
            raise ValueError(f"feature {plan.name!r} compiled twice")
        self._features[plan.name] = plan

    def build(self, order: list[str]) -> EmbeddingPlan:
        missing = [name for name in order if name not in self._features]
        if missing:
            raise ValueError(f"no plan for features {missing}")
        return EmbeddingPlan(self.dim, self.tables, self.slots, [self._features[name] for name in order])
