"""OptEmbed's compaction: a retrained table with fixed masks → a small physical table.

The kept rows are renumbered in rank order (0..k−1), every pruned id maps to ONE shared OOV
row k, and the table is only d_f wide (a :class:`~recsys.embeddings.combiners.ZeroPad`
restores the model dim). The OOV row is zero: the retrained model gives pruned ids a zero
vector, and the compacted model must predict exactly as the retrained one. (Fine-tuning the
compacted model would let that row learn one shared vector for all pruned ids, the authors'
"oov" mode.)
"""

from __future__ import annotations

import torch


def compact_rows(kept: int) -> int:
    """Rows of a compact table: the kept rows and the shared OOV row."""
    return kept + 1


def compact_remap(keep: torch.Tensor) -> torch.Tensor:
    """(n,) bool → (n,) int64 row of each id in the compact table: kept ids renumbered in rank
    order 0..k−1, every pruned id → k, the shared OOV row."""
    keep = keep.to(torch.bool)
    rank = torch.cumsum(keep.to(torch.int64), 0) - 1
    return torch.where(keep, rank, torch.full_like(rank, int(keep.sum())))


def compact_weights(weights: torch.Tensor, keep: torch.Tensor, kept_dim: int) -> torch.Tensor:
    """Retrained (n, D) table → compact (k + 1, d_f): kept rows, first d_f dims, zero OOV row."""
    rows = weights[keep.to(torch.bool), :kept_dim]  # (k, d_f)
    return torch.cat([rows, rows.new_zeros(1, kept_dim)])


@torch.no_grad()
def copy_compacted(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], kept: dict[str, torch.Tensor], dims: dict[str, int]
) -> None:
    """Fill a compact network's tables (``target``, by name) from a retrained network's."""
    for name, weights in target.items():
        weights.copy_(compact_weights(source[name], kept[name], dims[name]))
