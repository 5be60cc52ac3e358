"""``recsys::grouped_projection``: every mixed-dimension feature's combiner in one op.

A mixed-dimension feature (Ginart et al., 2021) reads its frequency blocks side by side in the
lookup output: a head block at the model dim D, added as it is, and narrower blocks, projected
to D by one matrix. For all F features at once, with each feature's narrow columns padded to a
common width W (``columns[f, w] = -1``) and its projection zero-free at those rows::

    out[b, f*D:(f+1)*D] = x[b, heads[f]:heads[f]+D] + Σ_w x[b, columns[f, w]] * projection[f, w]

In torch this is a gather, a batched matmul on a transposed view, a second gather for the
heads and an add, and backward a zero-filled scatter per gather: about 26 ms forward and
backward for a Kaggle batch on one core (md at 1/16, 26 features, W = 24, D = 16) where the
arithmetic is 60 MFLOP. The C++ kernel (``csrc/grouped_projection.cpp``) reads each row of x
once each way. It has a CPU kernel only; callers on other devices run the torch form
(``recsys.embeddings.grouped_projection``), which is also the reference the tests hold it to.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["grouped_projection"]

_LIB = torch.library.Library("recsys", "FRAGMENT")
_LIB.define("grouped_projection(Tensor x, Tensor columns, Tensor heads, Tensor projection) -> Tensor")
_LIB.define(
    "grouped_projection_backward(Tensor grad, Tensor x, Tensor columns, Tensor heads, Tensor projection)"
    " -> (Tensor grad_x, Tensor grad_projection)"
)


@torch.library.register_fake("recsys::grouped_projection")
def _fake(x, columns, heads, projection):
    return x.new_empty(x.shape[0], projection.shape[0] * projection.shape[2])


@torch.library.register_fake("recsys::grouped_projection_backward")
def _backward_fake(grad, x, columns, heads, projection):
    return torch.empty_like(x), torch.empty_like(projection)


def _setup_context(ctx, inputs, output):
    x, columns, heads, projection = inputs
    ctx.save_for_backward(x, columns, heads, projection)


def _backward(ctx, grad):
    x, columns, heads, projection = ctx.saved_tensors
    grad_x, grad_projection = torch.ops.recsys.grouped_projection_backward(grad, x, columns, heads, projection)
    return (grad_x if ctx.needs_input_grad[0] else None), None, None, (
        grad_projection if ctx.needs_input_grad[3] else None
    )


torch.library.register_autograd("recsys::grouped_projection", _backward, setup_context=_setup_context)


def grouped_projection(x: Tensor, columns: Tensor, heads: Tensor, projection: Tensor) -> Tensor:
    """All features' mixed-dimension combiners over the lookup output.

    Args:
        x: (B, C) float32, the lookup output.
        columns: (F, W) int64, the column of x each narrow position reads; -1 for padding.
        heads: (F,) int64, each feature's first column of its unprojected block; -1 for none.
        projection: (F, W, D) float32, each feature's projection rows (rows at padding unused).

    Returns:
        (B, F * D) float32, feature f at columns f*D .. (f+1)*D - 1.
    """
    return torch.ops.recsys.grouped_projection(x, columns, heads, projection)
