"""DLRM (Naumov et al., 2019): bottom MLP over dense features, pairwise dot interaction
between the dense vector and every sparse feature's embedding, top MLP to one logit.

The model is built by composition, like torchrec's ``models/dlrm.py``: it takes an embedding
module (anything mapping a KeyedJaggedTensor to a KeyedTensor of ``embedding_dim``-wide
vectors) and owns no loss, optimizer or device logic.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.config import DLRMConfig


def mlp(in_features: int, sizes: list[int], last_activation: bool) -> nn.Sequential:
    """Linear+ReLU stack; the final ReLU is optional (none before a logit)."""
    layers: list[nn.Module] = []
    for i, out_features in enumerate(sizes):
        layers.append(nn.Linear(in_features, out_features))
        if i < len(sizes) - 1 or last_activation:
            layers.append(nn.ReLU())
        in_features = out_features
    return nn.Sequential(*layers)


class DotInteraction(nn.Module):
    """Pairwise dot products of F+1 vectors (dense + F sparse), upper triangle, plus the dense vector.

    Output width: D + (F+1)F/2.
    """

    def __init__(self, num_vectors: int) -> None:
        super().__init__()
        rows, cols = torch.triu_indices(num_vectors, num_vectors, offset=1)
        self.register_buffer("pair_index", rows * num_vectors + cols, persistent=False)
        self.num_vectors = num_vectors

    def output_dim(self, dim: int) -> int:
        return dim + self.pair_index.numel()

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        # dense: (B, D); sparse: (B, F, D)
        stacked = torch.cat([dense.unsqueeze(1), sparse], dim=1)  # (B, F+1, D)
        gram = torch.bmm(stacked, stacked.transpose(1, 2))  # (B, F+1, F+1)
        pairs = gram.flatten(1).index_select(1, self.pair_index)  # (B, (F+1)F/2)
        return torch.cat([dense, pairs], dim=1)


class DLRM(nn.Module):
    """DLRM over any embedding module.

    Args:
        embedding: module mapping a KeyedJaggedTensor to a KeyedTensor; must expose
            ``features`` (logical feature names) and ``output_dims`` (all equal to the dim).
        num_dense: dense features (13 for Criteo).
        config: layer sizes.
    """

    def __init__(self, embedding: nn.Module, num_dense: int, config: DLRMConfig) -> None:
        super().__init__()
        dims = set(embedding.output_dims)
        if dims != {config.embedding_dim}:
            raise ValueError(f"embedding outputs dims {sorted(dims)}, DLRM expects {config.embedding_dim}")
        self.embedding = embedding
        self.num_sparse = len(embedding.features)
        self.dim = config.embedding_dim
        self.bottom = mlp(num_dense, list(config.bottom_mlp), last_activation=True)
        self.interaction = DotInteraction(self.num_sparse + 1)
        self.top = mlp(self.interaction.output_dim(self.dim), list(config.top_mlp), last_activation=False)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """Logits (B,) for dense (B, num_dense) and the sparse features."""
        dense_vec = self.bottom(dense)  # (B, D)
        pooled = self.embedding(sparse).values()  # (B, F * D)
        sparse_vecs = pooled.view(-1, self.num_sparse, self.dim)  # (B, F, D)
        return self.top(self.interaction(dense_vec, sparse_vecs)).squeeze(1)  # (B,)
