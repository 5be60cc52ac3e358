"""Combiners: a logical feature's looked-up slot vectors → one ``dim``-wide vector per bag.

Each combiner takes the slot outputs of one feature, in slot order, each ``(rows, d_slot)``,
and the feature's bag ``lengths`` (B,). For pooled slots ``rows`` = B (the lookup already
summed each bag); for per-id slots ``rows`` = N ids and the combiner pools after combining,
which is what the papers define for multi-hot bags (for the compositional product:
Σᵢ qᵢ ⊙ rᵢ, never (Σᵢ qᵢ) ⊙ (Σᵢ rᵢ)). Everything is TorchScript-able.
"""

from typing import List

import torch
from torch import nn


def pool_per_id(rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Sum per-id rows (N, d) into their bags: (B, d)."""
    batch = lengths.numel()
    bag = torch.repeat_interleave(torch.arange(batch, device=rows.device), lengths.long(), output_size=rows.shape[0])
    return torch.zeros(batch, rows.shape[1], dtype=rows.dtype, device=rows.device).index_add_(0, bag, rows)


class Single(nn.Module):
    """One slot that already has the feature's dimension (full, hashing trick)."""

    def forward(self, slots: List[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        return slots[0]


class Sum(nn.Module):
    """Element-wise sum of the slots (compositional ``add``; pooling commutes with it)."""

    def forward(self, slots: List[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        out = slots[0]
        for s in slots[1:]:
            out = out + s
        return out


class Concat(nn.Module):
    """Concatenation of the slots (compositional ``concat``, unified embedding's probes)."""

    def forward(self, slots: List[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        return torch.cat(slots, dim=1)


class Product(nn.Module):
    """Element-wise product per id, then pooled (compositional ``mult``; slots are per-id)."""

    def forward(self, slots: List[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        out = slots[0]
        for s in slots[1:]:
            out = out * s
        return pool_per_id(out, lengths)


class ProjectedSum(nn.Module):
    """Mixed-dimension blocks: each block's vectors projected to the common dim, then summed.

    A block already at the common dim needs no projection; its entry in ``projected`` is False.
    Blocks of dimension 0 hold no slot: their ids contribute nothing (the α rule gave them
    less than half a FBGEMM dim group).
    """

    def __init__(self, block_dims: List[int], dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.projections = nn.ModuleList(
            [nn.Identity() if d == dim else nn.Linear(d, dim, bias=False) for d in block_dims]
        )

    def forward(self, slots: List[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(lengths.numel(), self.dim, device=lengths.device)
        for i, projection in enumerate(self.projections):
            out = out + projection(slots[i])
        return out


class ZeroPad(nn.Module):
    """A slot narrower than the common dim, zero-padded (OptEmbed's searched dimension: the
    trailing dimensions its mask switched off are exactly zeros)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, slots: List[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        x = slots[0]
        return torch.nn.functional.pad(x, (0, self.dim - x.shape[1]))
