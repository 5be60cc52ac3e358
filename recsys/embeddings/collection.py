"""The embedding module every model plugs into: KeyedJaggedTensor → KeyedTensor.

:class:`EmbeddingCollection` follows torchrec's ``EmbeddingBagCollectionInterface``: it takes
the logical sparse features (Criteo's C1..C26) as a KeyedJaggedTensor and returns one pooled
vector per feature as a KeyedTensor. Internally it looks up the model's physical tables with
one :class:`~recsys.embeddings.tables.TableBatchedLookup`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from recsys.embeddings.memory import MemoryReport
from recsys.embeddings.tables import PhysicalTable, TableBatchedLookup, TableOptimizerConfig


class EmbeddingCollection(nn.Module):
    """Full embedding tables, one physical table per logical feature.

    Args:
        num_embeddings: rows per logical feature (its frequency-ranked vocabulary + OOV row).
        dim: embedding dimension of every feature.
        optimizer: the fused table optimizer.
        device: where tables live and the lookup runs.
        seed: initial-weight seed.
    """

    def __init__(
        self,
        num_embeddings: dict[str, int],
        dim: int,
        optimizer: TableOptimizerConfig,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.features = list(num_embeddings)
        self.dim = dim
        self.physical_tables = [PhysicalTable(f"t_{f}", n, dim) for f, n in num_embeddings.items()]
        self.lookup = TableBatchedLookup(self.physical_tables, optimizer, device=device, seed=seed)

    @property
    def output_dims(self) -> list[int]:
        return [self.dim] * len(self.features)

    def memory(self) -> MemoryReport:
        return MemoryReport.of(self.physical_tables, self.lookup.optimizer_config.kind)

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        if features.keys() != self.features:
            raise KeyError(f"expected sparse features {self.features}, got {features.keys()}")
        pooled = self.lookup(features.values(), features.offsets())  # (B, F * D)
        return KeyedTensor(keys=self.features, length_per_key=self.output_dims, values=pooled)
