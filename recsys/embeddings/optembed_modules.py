"""OptEmbed's modules (Lyu et al., CIKM 2022): the supernet's learned masks, and the fixed
masks of retraining. Each is a transform or a combiner of a
:class:`~recsys.embeddings.plan.FeaturePlan` (TorchScript-able forward); the maths lives in
:mod:`recsys.embeddings.optembed_masks`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from recsys.embeddings.combiners import pool_per_id
from recsys.embeddings.optembed_masks import prefix_mask, row_norms, step_ste, threshold_penalty

JaggedIds = Tuple[torch.Tensor, torch.Tensor]


class SupernetMask(nn.Module):
    """The supernet combiner: learned row mask per id, then pooling, then a width mask.

    Slot 0 is per id: (N, D) rows. Each row is kept iff ‖e‖₁ > t (step with the long-tailed
    STE); kept rows are pooled per bag; dims ≥ d are zeroed, with d sampled uniformly from
    ``candidates`` in training and ``eval_dim`` in eval mode (the search sets it). The row
    mask is taken on the full row, so the kept set does not depend on the width.

    Args:
        dim: the model dim D (the table's width).
        candidates: widths to sample, multiples of 4, at most D.
        threshold_init: initial t.
        reg_weight: λ of :meth:`regularization`.
        per_example: sample one width per bag instead of one per batch.
        threshold_lr: the dense optimizer's rate for t (``parameter_lr``, which the training
            loop gives this module's own parameters); None: the dense layers' rate.
    """

    def __init__(
        self,
        dim: int,
        candidates: List[int],
        threshold_init: float,
        reg_weight: float,
        per_example: bool,
        threshold_lr: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.threshold = nn.Parameter(torch.tensor(float(threshold_init)))
        self.parameter_lr = threshold_lr
        self.register_buffer("candidates", torch.tensor(candidates, dtype=torch.int64), persistent=False)
        self.reg_weight = reg_weight
        self.per_example = per_example
        self.eval_dim = dim

    def row_mask(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, D) rows → (N,) 1 for kept rows, 0 for pruned (STE gradient)."""
        return step_ste(row_norms(rows) - self.threshold)

    def sample_dims(self, batch: int, device: torch.device) -> torch.Tensor:
        """(1,) or (B,) widths drawn uniformly from the candidates."""
        count = batch if self.per_example else 1
        index = torch.randint(0, self.candidates.numel(), [count], device=device)
        return self.candidates[index]

    def regularization(self) -> torch.Tensor:
        return threshold_penalty(self.threshold, self.reg_weight)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows = x  # (N, D): one row per id
        pooled = pool_per_id(rows * self.row_mask(rows).unsqueeze(1), lengths)  # (B, D)
        if self.training:
            dims = self.sample_dims(lengths.numel(), rows.device)
        else:
            dims = torch.full([1], self.eval_dim, dtype=torch.int64, device=rows.device)
        return pooled * prefix_mask(dims, self.dim).to(pooled.dtype)  # (B, D)


class DropRows(nn.Module):
    """Retraining's fixed row mask, as a transform: pruned ids are removed from their bags, so
    they add nothing to the pooled vector (a bag of only pruned ids pools to zero).

    Args:
        keep: (num_embeddings,) bool, True for the rows the supernet kept.
    """

    def __init__(self, keep: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("keep", keep.to(torch.bool))

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        batch = lengths.numel()
        kept = self.keep[values]  # (N,)
        bag = torch.repeat_interleave(torch.arange(batch, device=values.device), lengths.long(), output_size=values.numel())
        new_lengths = torch.bincount(bag[kept], minlength=batch).to(lengths.dtype)  # (B,)
        return [(values[kept], new_lengths)]


class TruncatePad(nn.Module):
    """Retraining's fixed width mask, as a combiner: keep the first ``kept_dim`` dims, zeros after."""

    def __init__(self, kept_dim: int, dim: int) -> None:
        super().__init__()
        self.kept_dim = kept_dim
        self.dim = dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = x[:, : self.kept_dim]  # (B, d_f)
        return torch.nn.functional.pad(x, (0, self.dim - self.kept_dim))  # (B, D)
