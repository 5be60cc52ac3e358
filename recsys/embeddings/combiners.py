"""Combiners: a logical feature's looked-up slot vectors → one ``dim``-wide vector per bag.

A combiner takes ``x`` (R, Σ slot dims): the feature's slot vectors side by side, in slot
order (a view of the lookup's output when possible: no copies), and the feature's bag
``lengths`` (B,). For pooled slots R = B (the lookup already summed each bag); for per-id
slots R = N ids and the combiner pools after combining, which is what the papers define for
multi-hot bags (for the compositional product: Σᵢ qᵢ ⊙ rᵢ, never (Σᵢ qᵢ) ⊙ (Σᵢ rᵢ)).
Everything is TorchScript-able.
"""

from typing import List

import torch
from torch import nn


def pool_per_id(rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Sum per-id rows (N, d) into their bags: (B, d). Single-hot bags are already pooled (checked
    on CPU only: on a GPU the check would wait for the device, and the pooling is cheap there)."""
    batch = lengths.numel()
    if rows.shape[0] == batch and not rows.is_cuda and bool((lengths == 1).all()):
        return rows
    bag = torch.repeat_interleave(torch.arange(batch, device=rows.device), lengths.long(), output_size=rows.shape[0])
    return torch.zeros(batch, rows.shape[1], dtype=rows.dtype, device=rows.device).index_add_(0, bag, rows)


class Single(nn.Module):
    """The slots side by side already are the vector (full tables, hashing trick, and the
    ``concat`` of compositional partitions or unified embedding's probes)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return x


class Sum(nn.Module):
    """Element-wise sum of k slots (compositional ``add``; pooling commutes with it)."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.parts = parts

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], self.parts, x.shape[1] // self.parts).sum(dim=1)


def product_of_parts(x: torch.Tensor, parts: int) -> torch.Tensor:
    """Element-wise product of the ``parts`` equal-width slot vectors side by side in ``x``:
    (R, k * d) -> (R, d)."""
    split = x.reshape(x.shape[0], parts, x.shape[1] // parts)  # (R, k, d)
    out = split[:, 0]
    for i in range(1, parts):
        out = out * split[:, i]
    return out


class Product(nn.Module):
    """Element-wise product of k per-id slots, then pooled (compositional ``mult``)."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.parts = parts

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return pool_per_id(product_of_parts(x, self.parts), lengths)  # (N, d) products, pooled


class ProjectedSum(nn.Module):
    """Mixed-dimension blocks: each block's vectors projected to the common dim, then summed.

    Blocks come in frequency order, so their dims never grow: the first ``full`` blocks are at
    the common dim and are added unprojected (at most one: adjacent ones merge); the narrower
    rest, side by side (B, Σ d_b), go through ONE matmul with their projections stacked,
    (Σ d_b, dim) = Σ_b e_b P_b. Blocks of dimension 0 hold no slot: their ids contribute
    nothing (the α rule, rounded to FBGEMM's multiple of 4 by ``rounding``, gave them 0).
    Training runs every feature's projections at once
    (:mod:`recsys.embeddings.grouped_projection`); this per-feature form is the reference and
    serves the variable-batch layout and export.
    """

    def __init__(self, block_dims: List[int], dim: int) -> None:
        super().__init__()
        if any(a < b for a, b in zip(block_dims, block_dims[1:])):
            raise ValueError(f"mixed-dimension block dims must not grow with rank, got {block_dims}")
        self.dim = dim
        self.full = sum(1 for d in block_dims if d == dim)
        narrow = block_dims[self.full :]
        # each block's projection starts as nn.Linear(d_b, dim) would: U(±1/sqrt(d_b))
        bounds = torch.tensor([d**-0.5 for d in narrow for _ in range(d)]).view(-1, 1)
        self.projection = nn.Parameter((torch.rand(sum(narrow), dim) * 2 - 1) * bounds)  # (Σ d_b, dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        split = self.full * self.dim
        if self.full == 1:  # the usual case: adjacent unprojected blocks are one table (md.merge_unprojected_runs)
            out = x[:, :split]
        else:
            out = x[:, :split].reshape(x.shape[0], self.full, self.dim).sum(dim=1)  # (B, dim)
        if self.projection.shape[0] > 0:
            out = out + x[:, split:] @ self.projection
        return out


class ZeroPad(nn.Module):
    """A slot narrower than the common dim, zero-padded (OptEmbed's searched dimension: the
    trailing dimensions its mask switched off are exactly zeros)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, self.dim - x.shape[1]))
