"""``recsys::transform_ids_masked`` on CUDA: two Triton kernels (rows and weights, bag offsets).

The vectorised torch version (:func:`recsys_kernels.masked.masked_torch`) computes every kind's
row for every id and selects one, in about thirty kernels; here one program handles a block of
one slot's ids, branches once on the slot's kind and writes rows and weights in one pass, and a
second kernel writes the bag offsets. Nothing waits for the device: the sizes come from the
host (``ids_per_slot``, ``bags_per_slot``) and bad ids (negative, or beyond a map) raise a
device-side assertion. ``TRITON_INTERPRET=1`` runs the kernels on CPU tensors (the tests do).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from recsys_kernels.masked import SlotLayout, check_slot_params
from recsys_kernels.slots import SLOT_PARAM_COLUMNS, SlotKind

BLOCK = 1024
_MODULO = tl.constexpr(int(SlotKind.MODULO))
_HASH = tl.constexpr(int(SlotKind.HASH))
_DIGIT = tl.constexpr(int(SlotKind.DIGIT))
_REMAP = tl.constexpr(int(SlotKind.REMAP))
_BLOCK = tl.constexpr(int(SlotKind.BLOCK))
_KEEP = tl.constexpr(int(SlotKind.KEEP))
_COLUMNS = tl.constexpr(SLOT_PARAM_COLUMNS)


@triton.jit
def _fmix32(h):
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B).to(tl.uint32)
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35).to(tl.uint32)
    return h ^ (h >> 16)


@triton.jit
def _rows_kernel(values, slot_params, aux, in_start, counts, out_start, rows, weights, error, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < tl.load(counts + s)
    kind = tl.load(slot_params + s * _COLUMNS)
    a = tl.load(slot_params + s * _COLUMNS + 3)
    b = tl.load(slot_params + s * _COLUMNS + 4)
    ids = tl.load(values + tl.load(in_start + s) + j, mask=m, other=0)
    bad = m & (ids < 0)
    row = ids
    keep = ids == ids
    if kind == _MODULO:
        row = ids % a
    elif kind == _HASH:
        key = (a & 0xFFFFFFFF).to(tl.uint32)
        h = _fmix32((ids & 0xFFFFFFFF).to(tl.uint32) ^ key)
        h = _fmix32(h ^ ((ids >> 32).to(tl.uint32) + key).to(tl.uint32))
        row = (h.to(tl.int64) & 0xFFFFFFFF) % b
    elif kind == _DIGIT:
        row = ids // a
        if b > 0:
            row = row % b
    elif kind == _REMAP:
        bad = bad | (m & (ids >= b))
        row = tl.load(aux + a + ids, mask=m & (ids >= 0) & (ids < b), other=0)
    elif kind == _BLOCK:
        keep = (ids >= a) & (ids < b)
        row = tl.where(keep, ids - a, 0)
    elif kind == _KEEP:
        bad = bad | (m & (ids >= b))
        keep = tl.load(aux + a + ids, mask=m & (ids >= 0) & (ids < b), other=0) != 0
        row = tl.where(keep, ids, 0)
    at = tl.load(out_start + s) + j
    tl.store(rows + at, row, mask=m)
    tl.store(weights + at, keep.to(tl.float32), mask=m)
    tl.store(error + j * 0, 1, mask=bad)  # lanes racing to write the same 1


@triton.jit
def _offsets_kernel(slot_params, bag_start, in_start, counts, out_start, bag_base, offsets, batch, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    feature = tl.load(slot_params + s * _COLUMNS + 1)
    per_id = tl.load(slot_params + s * _COLUMNS + 2)
    first = tl.load(out_start + s)
    if per_id != 0:
        m = t < tl.load(counts + s)
        starts = first + t
    else:
        m = t < batch
        starts = first + tl.load(bag_start + feature * batch + t, mask=m, other=0) - tl.load(in_start + s)
    tl.store(offsets + tl.load(bag_base + s) + t, starts, mask=m)


def transform_ids_masked(
    values: Tensor, lengths: Tensor, slot_params: Tensor, aux: Tensor, batch: int, ids_per_slot: list[int], bags_per_slot: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """The op's CUDA kernel (arguments and results: :func:`recsys_kernels.masked.transform_ids_masked`)."""
    values, slot_params = values.contiguous(), slot_params.contiguous()
    device = values.device
    layout = SlotLayout.of(lengths, batch, slot_params)
    check_slot_params(slot_params, lengths.numel() // batch)
    slots, total, bags = len(ids_per_slot), sum(ids_per_slot), sum(bags_per_slot)
    rows = torch.empty(total, dtype=torch.int64, device=device)
    weights = torch.empty(total, dtype=torch.float32, device=device)
    offsets = torch.empty(bags + 1, dtype=torch.int64, device=device)
    error = torch.zeros(1, dtype=torch.int32, device=device)
    aux = aux.contiguous() if aux.numel() else torch.zeros(1, dtype=torch.int64, device=device)
    if total:
        _rows_kernel[(slots, triton.cdiv(max(ids_per_slot), BLOCK))](
            values, slot_params, aux, layout.in_start, layout.counts, layout.out_start, rows, weights, error, BLOCK=BLOCK)
    if bags:
        _offsets_kernel[(slots, triton.cdiv(max(bags_per_slot), BLOCK))](
            slot_params, layout.bag_start, layout.in_start, layout.counts, layout.out_start, layout.bag_base, offsets, batch,
            BLOCK=BLOCK)
    offsets[bags:].fill_(total)
    torch._assert_async(error[0] == 0, "transform_ids_masked: a negative id, or an id beyond the rows of its slot's map")
    return rows, offsets, weights
