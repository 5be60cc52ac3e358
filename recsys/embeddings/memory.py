"""Exact memory accounting of physical tables: weights and fused-optimizer state."""

from __future__ import annotations

import dataclasses

from recsys.embeddings.tables import PhysicalTable, optimizer_state_bytes

from recsys.embeddings.specs import TableOptimizer


@dataclasses.dataclass
class TableMemory:
    table: str
    rows: int
    dim: int
    weight_bytes: int
    optimizer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.optimizer_bytes


@dataclasses.dataclass
class MemoryReport:
    """Bytes per physical table and in total; what training and evaluation report.

    ``combiner_parameters`` counts the float32 weights that combiners add beside the tables
    (mixed-dimension projections); they are part of ``total_bytes``, so budgets and reports
    never hide them.
    """

    tables: list[TableMemory]
    combiner_parameters: int = 0

    @classmethod
    def of(cls, tables: list[PhysicalTable], optimizer: TableOptimizer, combiner_parameters: int = 0) -> "MemoryReport":
        return cls(
            [
                TableMemory(t.name, t.num_embeddings, t.dim, t.weight_bytes, optimizer_state_bytes(t, optimizer))
                for t in tables
            ],
            combiner_parameters,
        )

    @property
    def weight_bytes(self) -> int:
        return sum(t.weight_bytes for t in self.tables)

    @property
    def optimizer_bytes(self) -> int:
        return sum(t.optimizer_bytes for t in self.tables)

    @property
    def combiner_bytes(self) -> int:
        return self.combiner_parameters * 4

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.optimizer_bytes + self.combiner_bytes

    @property
    def parameters(self) -> int:
        """Table parameters (rows x dim summed over physical tables)."""
        return sum(t.rows * t.dim for t in self.tables)

    def summary(self) -> dict:
        return {
            "tables": len(self.tables),
            "parameters": self.parameters,
            "weight_bytes": self.weight_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "combiner_parameters": self.combiner_parameters,
            "total_bytes": self.total_bytes,
        }

    def to_dict(self) -> dict:
        return {**self.summary(), "per_table": [dataclasses.asdict(t) for t in self.tables]}
