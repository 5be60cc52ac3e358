"""``recsys::transform_ids_masked`` on CUDA: Triton kernels (slot layout, rows and weights, bag offsets).

The vectorised torch version (:func:`recsys_kernels.masked.masked_torch`) computes every kind's
row for every id and selects one, in about thirty kernels; here one program handles a block of
one slot's ids, branches once on the slot's kind and writes rows and weights in one pass, and a
second kernel writes the bag offsets, after a one-program kernel that lays the slots out. On a
2048-row batch the op is bound by launches, so it makes few. Nothing waits for the device: the
sizes come from the host (``ids_per_slot``, ``bags_per_slot``) and bad ids or parameters raise a
device-side assertion. ``TRITON_INTERPRET=1`` runs the kernels on CPU tensors (the tests do).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

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
def _bag_start(ends, i):
    """Where bag ``i`` starts, from the inclusive prefix sum of the lengths."""
    return tl.where(i > 0, tl.load(ends + i - 1, mask=i > 0, other=0), 0)


@triton.jit
def _layout_kernel(slot_params, ends, layout, error, slots, batch, features, SLOTS: tl.constexpr):
    """One program: each slot's first input id, id count, first output id and first bag (rows of
    ``layout``), and the checks of its parameters."""
    s = tl.arange(0, SLOTS)
    m = s < slots
    kind = tl.load(slot_params + s * _COLUMNS, mask=m, other=0)
    feature = tl.load(slot_params + s * _COLUMNS + 1, mask=m, other=0)
    per_id = tl.load(slot_params + s * _COLUMNS + 2, mask=m, other=0)
    a = tl.load(slot_params + s * _COLUMNS + 3, mask=m, other=1)
    b = tl.load(slot_params + s * _COLUMNS + 4, mask=m, other=1)
    bad = (feature < 0) | (feature >= features) | (kind < 0) | (kind > _KEEP)
    bad = bad | (((kind == _MODULO) | (kind == _DIGIT)) & (a <= 0)) | ((kind == _HASH) & (b <= 0))
    feature = tl.where(bad, 0, feature)
    first = _bag_start(ends, feature * batch)
    counts = tl.where(m, _bag_start(ends, (feature + 1) * batch) - first, 0)
    bags = tl.where(m, tl.where(per_id != 0, counts, batch), 0)
    tl.store(layout + s, first, mask=m)
    tl.store(layout + SLOTS + s, counts, mask=m)
    tl.store(layout + 2 * SLOTS + s, tl.cumsum(counts, axis=0) - counts, mask=m)
    tl.store(layout + 3 * SLOTS + s, tl.cumsum(bags, axis=0) - bags, mask=m)
    tl.store(error + s * 0, 0, mask=m & bad)


@triton.jit
def _rows_kernel(values, slot_params, aux, layout, rows, weights, error, SLOTS: tl.constexpr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < tl.load(layout + SLOTS + s)
    kind = tl.load(slot_params + s * _COLUMNS)
    a = tl.load(slot_params + s * _COLUMNS + 3)
    b = tl.load(slot_params + s * _COLUMNS + 4)
    ids = tl.load(values + tl.load(layout + s) + j, mask=m, other=0)
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
    at = tl.load(layout + 2 * SLOTS + s) + j
    tl.store(rows + at, row, mask=m)
    tl.store(weights + at, keep.to(tl.float32), mask=m)
    tl.store(error + j * 0, 0, mask=bad)  # lanes racing to write the same 0


@triton.jit
def _offsets_kernel(slot_params, ends, layout, offsets, batch, bags, total, SLOTS: tl.constexpr, BLOCK: tl.constexpr):
    s = tl.program_id(0)
    t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    feature = tl.load(slot_params + s * _COLUMNS + 1)
    per_id = tl.load(slot_params + s * _COLUMNS + 2)
    first = tl.load(layout + 2 * SLOTS + s)
    if per_id != 0:
        m = t < tl.load(layout + SLOTS + s)
        starts = first + t
    else:
        m = t < batch
        starts = first + _bag_start(ends, feature * batch + t) - tl.load(layout + s)
    tl.store(offsets + tl.load(layout + 3 * SLOTS + s) + t, starts, mask=m)
    tl.store(offsets + bags + t * 0, total + t * 0, mask=(t + s) == 0)  # the end of the last bag, once


def transform_ids_masked(
    values: Tensor, lengths: Tensor, slot_params: Tensor, aux: Tensor, batch: int, ids_per_slot: list[int], bags_per_slot: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """The op's CUDA kernel (arguments and results: :func:`recsys_kernels.masked.transform_ids_masked`).

    Six launches: the lengths' prefix sum, the per-slot layout, rows and weights, offsets, and
    the flag a bad id or parameter clears, asserted on the device."""
    values, slot_params = values.contiguous(), slot_params.contiguous()
    device = values.device
    slots, total, bags = len(ids_per_slot), sum(ids_per_slot), sum(bags_per_slot)
    width = triton.next_power_of_2(max(slots, 1))
    ends = torch.cumsum(lengths, 0, dtype=torch.int64)  # (F*B,) inclusive
    layout = torch.empty(4 * width, dtype=torch.int64, device=device)  # first id, count, first output, first bag
    rows = torch.empty(total, dtype=torch.int64, device=device)
    weights = torch.empty(total, dtype=torch.float32, device=device)
    offsets = torch.empty(bags + 1, dtype=torch.int64, device=device)
    ok = torch.ones(1, dtype=torch.int32, device=device)
    aux = aux.contiguous() if aux.numel() else torch.zeros(1, dtype=torch.int64, device=device)
    _layout_kernel[(1,)](slot_params, ends, layout, ok, slots, batch, lengths.numel() // batch, SLOTS=width)
    if total:
        _rows_kernel[(slots, triton.cdiv(max(ids_per_slot), BLOCK))](values, slot_params, aux, layout, rows, weights, ok,
                                                                     SLOTS=width, BLOCK=BLOCK)
    _offsets_kernel[(max(slots, 1), triton.cdiv(max(max(bags_per_slot, default=0), 1), BLOCK))](
        slot_params, ends, layout, offsets, batch, bags, total, SLOTS=width, BLOCK=BLOCK)
    torch._assert_async(ok, "transform_ids_masked: a negative id, an id beyond the rows of its slot's map, "
                            "or a slot with a bad kind, feature, modulus or divisor")
    return rows, offsets, weights
