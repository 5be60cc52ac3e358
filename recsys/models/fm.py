"""Factorization machine (Rendle, "Factorization Machines", ICDM 2010) over recsys's embeddings.

The quality baseline of ``benchmarks/bench_quality.py``: the model family of the synthetic
generator's planted click model (:mod:`recsys.data.synth_model`), so on synthetic data it
shows how much of the Bayes-optimal AUC one epoch can learn; a DLRM should reach at least as much.

Every input is a vector ``x_i v_i``: each sparse feature's embedding (value 1), each dense
feature's learned vector ``u_j`` scaled by its standardised value ``y_j``, and one constant
vector ``c``. The logit is::

    b + beta . y + sum_{i<j} <x_i v_i, x_j v_j>
      = b + beta . y + (||sum_i x_i v_i||^2 - sum_i ||x_i v_i||^2) / 2      (Rendle's O(nD) form)

The constant vector makes ``<c, e_f[id]>`` each id's linear weight ``w_f[id]``, so one table of
``D`` columns holds both an id's weight and its factors (FBGEMM tables are at least 4 wide, so a
separate 1-wide weight table would waste 3 columns per row). Dense values are standardised by
batch normalisation (Ioffe and Szegedy, 2015) with a learned scale and shift per feature, since
the pairwise terms need centred ``y``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor


class FactorizationMachine(nn.Module):
    """Second-order FM over any embedding module (KJT -> KeyedTensor of ``dim``-wide vectors).

    Args:
        embedding: as :class:`recsys.models.dlrm.DLRM` takes it.
        num_dense: dense features.
        dim: the embedding dim (every sparse feature's vector width).
    """

    def __init__(self, embedding: nn.Module, num_dense: int, dim: int) -> None:
        super().__init__()
        dims = set(embedding.output_dims)
        if dims != {dim}:
            raise ValueError(f"embedding outputs dims {sorted(dims)}, the FM expects {dim}")
        self.embedding = embedding
        self.num_sparse = len(embedding.features)
        self.dim = dim
        self.dense_norm = nn.BatchNorm1d(num_dense, affine=True)  # y: standardised dense values
        self.dense_vectors = nn.Parameter(torch.randn(num_dense, dim) * 0.01)  # u_j: (num_dense, D)
        # c: (1, D), unit length: the ids' linear weights <c, e> move as fast as their factors
        self.constant = nn.Parameter(torch.randn(1, dim) / dim**0.5)
        self.linear = nn.Linear(num_dense, 1)  # b + beta . y

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """Logits (B,) for dense (B, num_dense) and the sparse features."""
        y = self.dense_norm(dense)  # (B, num_dense)
        sparse_vecs = self.embedding(sparse).values().view(-1, self.num_sparse, self.dim)  # (B, F, D)
        dense_vecs = y.unsqueeze(2) * self.dense_vectors  # (B, num_dense, D)
        constant = self.constant.expand(len(dense), 1, self.dim)  # (B, 1, D)
        vectors = torch.cat([sparse_vecs, dense_vecs, constant], dim=1)  # (B, F + num_dense + 1, D)
        pairwise = 0.5 * (vectors.sum(1).square().sum(1) - vectors.square().sum((1, 2)))  # (B,)
        return self.linear(y).squeeze(1) + pairwise  # (B,)
