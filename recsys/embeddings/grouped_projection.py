"""All features' mixed-dimension projections in one batched matmul.

A mixed-dimension feature (Ginart et al., 2021) is combined by its
:class:`~recsys.embeddings.combiners.ProjectedSum`: its unprojected block (at the model dim)
plus its narrow blocks side by side times their stacked projections. Run feature by feature,
that is about six small ops per feature forward and as many backward (26 matmuls of
(B, ~50) x (~50, 16), each slice's backward a zero-filled copy), and on a CPU those op costs,
not the arithmetic, made mixed-dimension steps about twice as slow as full tables'.

:class:`GroupedProjection` does the same arithmetic for every feature at once:

    narrow = lookup_output[:, narrow columns of every feature, zero-padded to the widest]  # (F, B, W)
    out    = bmm(narrow, stacked projections)  + lookup_output[:, each feature's head block]  # (B, F, D)

It owns no parameters: it reads the per-feature combiners' ``projection`` tensors, so
checkpoints, export and the per-feature path see the same weights. Padded positions gather
column 0 and meet zero rows of the stacked projection, so they add nothing and get no gradient.

On a CPU with recsys's kernels built, the gathers, the batched matmul and the head add run as
one op, ``recsys::grouped_projection`` (``kernels/recsys_kernels/grouped_projection.py``),
which reads each row of the lookup output once forward and once backward: 26 ms -> 12 ms for
a Kaggle batch of md at 1/16 on one core. The torch form above runs elsewhere, and is the
reference the op is tested against.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from recsys.embeddings.combiners import ProjectedSum
from recsys.embeddings.kernels import kernels_unavailable, recsys_kernels


class GroupedProjection(nn.Module):
    """Combine the lookup output (B, Σ slot dims) of a plan whose every feature is a
    :class:`ProjectedSum` into (B, F * dim), feature order = column order.

    Args:
        combiners: each feature's combiner, in feature order (their projections stay theirs).
        starts: each feature's first column in the lookup output.
        widths: each feature's column width there (0 for a feature with no table).
    """

    def __init__(self, combiners: List[ProjectedSum], starts: List[int], widths: List[int]) -> None:
        super().__init__()
        if not combiners or any(not isinstance(c, ProjectedSum) or c.full > 1 for c in combiners):
            raise ValueError("GroupedProjection needs one ProjectedSum with at most one unprojected block per feature")
        dim = combiners[0].dim
        # a plain list: the projections are registered (and saved) by their own feature modules
        self._combiners = list(combiners)
        self.dim = dim
        narrow = [w - c.full * dim for c, w in zip(combiners, widths)]
        self.widest = max(max(narrow), 1)
        gather = torch.zeros(len(combiners), self.widest, dtype=torch.int64)  # (F, W): column 0 where padded
        rows = []  # where each feature's projection rows go in the stacked (F * W, dim) matrix
        for f, (c, start, n) in enumerate(zip(combiners, starts, narrow)):
            gather[f, :n] = torch.arange(start + c.full * dim, start + c.full * dim + n)
            rows.extend(range(f * self.widest, f * self.widest + n))
        self.register_buffer("gather", gather.flatten(), persistent=False)
        # the op's form of the same layout: -1 at padding and for a feature without a head
        columns = torch.where(torch.arange(self.widest) < torch.tensor(narrow).view(-1, 1), gather, -1)
        self.register_buffer("columns", columns, persistent=False)  # (F, W)
        self.register_buffer("head_columns", torch.tensor([start if c.full else -1 for c, start in zip(combiners, starts)]),
                             persistent=False)  # (F,)
        self.use_op = not kernels_unavailable()
        self.register_buffer("rows", torch.tensor(rows, dtype=torch.int64), persistent=False)
        # each feature's unprojected block; a feature without one reads columns 0..dim-1, masked
        heads = [(start if c.full else 0) + d for c, start in zip(combiners, starts) for d in range(dim)]
        self.register_buffer("heads", torch.tensor(heads, dtype=torch.int64), persistent=False)
        has_head = torch.tensor([float(c.full) for c in combiners]).view(1, -1, 1)  # (1, F, 1)
        self.register_buffer("head_mask", has_head, persistent=False)
        self.any_heads = any(c.full for c in combiners)
        self.all_heads = all(c.full for c in combiners)

    def stacked_projections(self) -> torch.Tensor:
        """(F, W, dim): each feature's projection, zero rows below it."""
        features = len(self._combiners)
        flat = torch.cat([c.projection for c in self._combiners])  # (Σ narrow, dim)
        out = flat.new_zeros(features * self.widest, self.dim).index_copy(0, self.rows, flat)
        return out.view(features, self.widest, self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_op and x.device.type == "cpu" and x.dtype == torch.float32:
            return recsys_kernels.grouped_projection(x, self.columns, self.head_columns, self.stacked_projections())
        return self.torch_forward(x)

    def torch_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same combination in torch ops (other devices and dtypes; the op's reference)."""
        batch, features = x.shape[0], len(self._combiners)
        narrow = x.index_select(1, self.gather).view(batch, features, self.widest)  # (B, F, W)
        projected = torch.bmm(narrow.transpose(0, 1), self.stacked_projections())  # (F, B, dim)
        out = projected.transpose(0, 1)  # (B, F, dim)
        if self.any_heads:
            heads = x.index_select(1, self.heads).view(batch, features, self.dim)  # (B, F, dim)
            out = out + (heads if self.all_heads else heads * self.head_mask)
        return out.reshape(batch, features * self.dim)
