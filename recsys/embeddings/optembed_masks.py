"""OptEmbed's maths as pure functions (Lyu et al., CIKM 2022): the row mask and its gradient,
the threshold regulariser, the width mask. TorchScript-able; the modules in
:mod:`recsys.embeddings.optembed_modules` are built from them.

A row e of field f is kept when its L1 norm exceeds the field's learned threshold:
m(e) = S(‖e‖₁ − t_f), S the unit step. S has no useful gradient, so the backward uses the
paper's *long-tailed* straight-through estimator (from Dynamic Sparse Training, Liu et al.
2020)::

    ∂S/∂x ≈ 2 − 4|x|   for |x| ≤ 0.4
            0.4        for 0.4 < |x| ≤ 1
            0          otherwise

so rows near the threshold still receive gradient (a pruned row can come back) and the
threshold learns from the loss.
"""

from __future__ import annotations

import torch


def row_norms(rows: torch.Tensor) -> torch.Tensor:
    """L1 norm of each row: (N, D) → (N,)."""
    return rows.abs().sum(dim=1)


def long_tail_surrogate(x: torch.Tensor) -> torch.Tensor:
    """A function whose derivative is the long-tailed estimator of the unit step's gradient:
    2 − 4|x| on |x| ≤ 0.4, 0.4 on 0.4 < |x| ≤ 1, 0 beyond (its value does not matter)."""
    ax = x.abs()
    return torch.where(ax <= 0.4, 2 * x - 2 * x * ax, torch.where(ax <= 1.0, 0.4 * x, torch.zeros_like(x)))


def step_ste(x: torch.Tensor) -> torch.Tensor:
    """Unit step 1[x > 0] forward, long-tailed straight-through estimator backward.

    The detach trick: step(x) + s(x) − s(x).detach() has step's value exactly (s − s = 0)
    and s's gradient; it needs no custom autograd Function, so it scripts.
    """
    surrogate = long_tail_surrogate(x)
    return (x > 0).to(x.dtype) + surrogate - surrogate.detach()


def threshold_penalty(threshold: torch.Tensor, weight: float) -> torch.Tensor:
    """λ·exp(−t): rewards higher thresholds, i.e. more pruned rows."""
    return weight * torch.exp(-threshold)


def prefix_mask(dims: torch.Tensor, dim: int) -> torch.Tensor:
    """(K,) widths → (K, dim) float masks, 1 on the first d dims and 0 after."""
    return (torch.arange(dim, device=dims.device).unsqueeze(0) < dims.unsqueeze(1)).float()


def kept_rows(weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """The supernet's final row mask of one table: (rows, D) → (rows,) bool, ‖e‖₁ > t."""
    return row_norms(weights) - threshold > 0
