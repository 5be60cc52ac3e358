"""``recsys::dot_interaction``: DLRM's pairwise dot interaction (Naumov et al., 2019) in one op.

A row's vectors are the dense vector (B, D), the F sparse vectors (B, F, D) and optionally a
learned constant (D,), V in all; the output row is the dense vector followed by the V(V-1)/2
dot products v_i . v_j, i < j, in ``torch.triu_indices(V, V, 1)`` order::

    out[b] = [dense[b], v_0.v_1, v_0.v_2, ..., v_{V-2}.v_{V-1}]

In torch that is a concatenation, a batched matmul and a gather of the upper triangle, whose
backward is a zero-filled scatter, two batched matmuls and a split: about 4 ms forward and
backward for a Kaggle batch (B 2048, V 28, D 16) on one core, mostly in the gather and the
scatter. The C++ kernel (``csrc/dot_interaction.cpp``) reads each row's vectors once each way
and computes in float32. It has a CPU kernel only, for up to 64 vectors a row; callers elsewhere
run the torch form (:class:`recsys.models.dlrm.DotInteraction`), the reference the tests hold
it to.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["dot_interaction", "MAX_VECTORS"]

MAX_VECTORS = 64  # the kernel's limit on V (csrc/dot_interaction.cpp, kMaxBlocks * kLanes)

_LIB = torch.library.Library("recsys", "FRAGMENT")
_LIB.define("dot_interaction(Tensor dense, Tensor sparse, Tensor? constant=None) -> Tensor")
_LIB.define(
    "dot_interaction_backward(Tensor grad, Tensor dense, Tensor sparse, Tensor? constant=None)"
    " -> (Tensor grad_dense, Tensor grad_sparse, Tensor grad_constant)"
)


def _vectors(sparse: Tensor, constant: Optional[Tensor]) -> int:
    return 1 + sparse.shape[1] + (0 if constant is None else 1)


@torch.library.register_fake("recsys::dot_interaction")
def _fake(dense, sparse, constant=None):
    v = _vectors(sparse, constant)
    return dense.new_empty(dense.shape[0], dense.shape[1] + v * (v - 1) // 2)


@torch.library.register_fake("recsys::dot_interaction_backward")
def _backward_fake(grad, dense, sparse, constant=None):
    grad_constant = torch.empty_like(constant) if constant is not None else dense.new_empty(0)
    return torch.empty_like(dense), torch.empty_like(sparse), grad_constant


def _setup_context(ctx, inputs, output):
    dense, sparse, constant = inputs
    ctx.save_for_backward(dense, sparse, constant)


def _backward(ctx, grad):
    dense, sparse, constant = ctx.saved_tensors
    grad_dense, grad_sparse, grad_constant = torch.ops.recsys.dot_interaction_backward(grad, dense, sparse, constant)
    needs = ctx.needs_input_grad
    return (grad_dense if needs[0] else None), (grad_sparse if needs[1] else None), (
        grad_constant if constant is not None and needs[2] else None
    )


torch.library.register_autograd("recsys::dot_interaction", _backward, setup_context=_setup_context)


def dot_interaction(dense: Tensor, sparse: Tensor, constant: Optional[Tensor] = None) -> Tensor:
    """The dense vector and every pairwise dot product of a row's vectors.

    Args:
        dense: (B, D) float32.
        sparse: (B, F, D) float32.
        constant: (D,) float32, a vector every row shares (the last of the V), or None.

    Returns:
        (B, D + V(V-1)/2) float32, V = 1 + F (+ 1 with the constant).
    """
    return torch.ops.recsys.dot_interaction(dense, sparse, constant)
