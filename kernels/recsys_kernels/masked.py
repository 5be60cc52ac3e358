"""``recsys::transform_ids_masked``: a plan's slot ids with sizes known before the device runs.

``recsys::transform_ids`` drops the ids a slot does not take (mixed-dimension frequency blocks,
OptEmbed's pruned rows), so the size of its output is known only once the ids are read: on a
GPU, the host would wait for the device every step. This op keeps every id in every slot of its
feature instead and gives each one a weight: 1 for the ids a slot takes, 0 for the others
(their row is 0, any valid row would do). Fed to FBGEMM's lookup as per-sample weights, a
weight-0 id adds nothing to its bag's sum and no gradient to its row, so a pooled (SUM) lookup
and its fused row-wise Adagrad or SGD update are those of the dropped-id layout, at the cost of
looking up the dropped ids (one extra lookup of the feature per extra block). A fused optimizer
with weight decay would decay the rows of weight-0 ids: callers must not use it there.

Every output size then follows from the ids each slot reads and the bags it emits, which the
caller passes from the KeyedJaggedTensor's ``length_per_key`` (already on the host):
``ids_per_slot[s]`` = ids of slot s's feature, ``bags_per_slot[s]`` = B for pooled slots, the
feature's ids for per-id slots. Shapes are therefore static for ``torch.compile`` and export.

The implementation below is vectorised torch (the CPU kernel, and the reference); on CUDA,
:mod:`recsys_kernels.triton_masked` runs it as Triton kernels when Triton is installed.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from recsys_kernels.slots import SlotKind as K

__all__ = ["SlotLayout", "masked_torch", "transform_ids_masked"]


@dataclasses.dataclass
class SlotLayout:
    """Where each slot reads and writes, from a batch's lengths (all on the batch's device).

    Attributes:
        bag_start: (F*B + 1,) position of each input bag's first id in ``values``.
        in_start: (S,) position of each slot's feature's first id in ``values``.
        counts: (S,) ids each slot reads (its feature's ids).
        out_start: (S,) each slot's first position in the output values.
        bag_base: (S,) each slot's first bag in the output offsets.
    """

    bag_start: Tensor
    in_start: Tensor
    counts: Tensor
    out_start: Tensor
    bag_base: Tensor

    @staticmethod
    def of(lengths: Tensor, batch: int, slot_params: Tensor) -> "SlotLayout":
        zero = torch.zeros(1, dtype=torch.int64, device=lengths.device)
        bag_start = torch.cat([zero, torch.cumsum(lengths.to(torch.int64), 0)])
        feature = slot_params[:, 1]
        in_start = bag_start[feature * batch]
        counts = bag_start[(feature + 1) * batch] - in_start
        bags = torch.where(slot_params[:, 2] != 0, counts, batch)
        return SlotLayout(bag_start, in_start, counts, torch.cumsum(counts, 0) - counts, torch.cumsum(bags, 0) - bags)


def _fmix32(h: Tensor) -> Tensor:
    """MurmurHash3's finalizer on int64 tensors holding values in [0, 2^32) (recsys' hash32;
    written again here because kernels/ sits below recsys)."""
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _hash32(ids: Tensor, key: Tensor) -> Tensor:
    h = _fmix32((ids & 0xFFFFFFFF) ^ key)
    return _fmix32(h ^ (((ids >> 32) + key) & 0xFFFFFFFF))


def check_slot_params(slot_params: Tensor, num_features: int) -> None:
    """Device-side checks of a plan's slot rows (asynchronous on a GPU: no wait for the device)."""
    kind, feature, _, a, b = slot_params.unbind(1)
    torch._assert_async(((feature >= 0) & (feature < num_features)).all(), "transform_ids_masked: a slot reads a feature beyond the batch's")
    divides = (kind == K.MODULO) | (kind == K.DIGIT)
    positive = torch.where(divides, a > 0, torch.where(kind == K.HASH, b > 0, True))
    torch._assert_async(positive.all(), "transform_ids_masked: a slot has a non-positive modulus or divisor")


def slot_rows(values: Tensor, slot_params: Tensor, aux: Tensor, layout: SlotLayout, total: int) -> tuple[Tensor, Tensor]:
    """Every slot's row and weight of each id its feature holds: ((M,) int64, (M,) float32)."""
    device = values.device
    slot = torch.repeat_interleave(torch.arange(slot_params.shape[0], device=device), layout.counts, output_size=total)  # (M,)
    ids = values[layout.in_start[slot] + torch.arange(total, device=device) - layout.out_start[slot]]  # (M,)
    kind, a, b = slot_params[slot, 0], slot_params[slot, 3], slot_params[slot, 4]  # (M,) each
    torch._assert_async((ids >= 0).all(), "transform_ids_masked: a negative id (ids are frequency ranks, >= 0)")
    divisor = torch.where((kind == K.MODULO) | (kind == K.DIGIT), a, 1)
    is_map = (kind == K.REMAP) | (kind == K.KEEP)
    torch._assert_async((~is_map | (ids < b)).all(), "transform_ids_masked: an id is beyond the rows of its slot's map")
    mapped = aux[torch.where(is_map, a + ids, 0)] if aux.numel() else torch.zeros_like(ids)
    quotient = ids // divisor
    row = torch.where(kind == K.MODULO, ids % divisor, ids)
    row = torch.where(kind == K.HASH, _hash32(ids, a & 0xFFFFFFFF) % torch.where(kind == K.HASH, b, 1), row)
    row = torch.where(kind == K.DIGIT, torch.where(b > 0, quotient % b.clamp(min=1), quotient), row)
    row = torch.where(kind == K.REMAP, mapped, row)
    row = torch.where(kind == K.BLOCK, ids - a, row)
    keep = torch.where(kind == K.BLOCK, (ids >= a) & (ids < b), torch.where(kind == K.KEEP, mapped != 0, True))
    return torch.where(keep, row, 0), keep.to(torch.float32)


def slot_offsets(slot_params: Tensor, layout: SlotLayout, batch: int, bags: int, total: int) -> Tensor:
    """The output's bag offsets (L + 1,): pooled slots take their feature's B bags, per-id slots
    one bag per id."""
    device = slot_params.device
    per_id = slot_params[:, 2] != 0
    bag_counts = torch.where(per_id, layout.counts, batch)
    slot = torch.repeat_interleave(torch.arange(slot_params.shape[0], device=device), bag_counts, output_size=bags)  # (L,)
    t = torch.arange(bags, device=device) - layout.bag_base[slot]  # bag within its slot
    last = layout.bag_start.numel() - 1
    pooled = layout.bag_start[(slot_params[slot, 1] * batch + t).clamp(max=last)] - layout.in_start[slot]
    starts = layout.out_start[slot] + torch.where(per_id[slot], t, pooled)
    return torch.cat([starts, torch.full((1,), total, dtype=torch.int64, device=device)])


def _check_sizes(lengths: Tensor, batch: int, slot_params: Tensor, layout: SlotLayout, ids_per_slot: list[int], bags_per_slot: list[int]) -> None:
    if lengths.numel() % batch or slot_params.shape[0] != len(ids_per_slot) or len(ids_per_slot) != len(bags_per_slot):
        raise ValueError(f"transform_ids_masked: {lengths.numel()} lengths for batch {batch}, {slot_params.shape[0]} slots, "
                         f"{len(ids_per_slot)} ids_per_slot, {len(bags_per_slot)} bags_per_slot")
    if lengths.device.type == "cpu":  # on a device this read would wait for it
        counts = layout.counts.tolist()
        bags = [c if p else batch for c, p in zip(counts, slot_params[:, 2].tolist())]
        if counts != list(ids_per_slot) or bags != list(bags_per_slot):
            raise ValueError(f"transform_ids_masked: the batch's slots hold {counts} ids in {bags} bags, "
                             f"but ids_per_slot={list(ids_per_slot)} and bags_per_slot={list(bags_per_slot)}")


def masked_torch(
    values: Tensor, lengths: Tensor, slot_params: Tensor, aux: Tensor, batch: int, ids_per_slot: list[int], bags_per_slot: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """The op in vectorised torch: its CPU kernel, the reference, and the CUDA kernel without Triton."""
    layout = SlotLayout.of(lengths, batch, slot_params)
    _check_sizes(lengths, batch, slot_params, layout, ids_per_slot, bags_per_slot)
    check_slot_params(slot_params, lengths.numel() // batch)
    total = sum(ids_per_slot)
    rows, weights = slot_rows(values, slot_params, aux, layout, total)
    return rows, slot_offsets(slot_params, layout, batch, sum(bags_per_slot), total), weights


@torch.library.custom_op("recsys::transform_ids_masked", mutates_args=())
def transform_ids_masked(
    values: Tensor, lengths: Tensor, slot_params: Tensor, aux: Tensor, batch: int, ids_per_slot: list[int], bags_per_slot: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Every slot's rows of a plan, with a weight per id instead of dropped ids.

    Args:
        values, lengths: a KeyedJaggedTensor's ``values()`` (N,) int64 and ``lengths()`` (F*B,).
        slot_params, aux: as for ``recsys::transform_ids`` (:mod:`recsys_kernels.slots`).
        batch: B.
        ids_per_slot: (S,) ids of each slot's feature (from ``length_per_key``).
        bags_per_slot: (S,) B for pooled slots, ``ids_per_slot[s]`` for per-id slots.

    Returns:
        values: (M,) int64 rows, slots major (M = Σ ids_per_slot).
        offsets: (L + 1,) int64 bag offsets (L = Σ bags_per_slot).
        weights: (M,) float32 1 for the ids a slot takes, 0 for those it drops.
    """
    return masked_torch(values, lengths, slot_params, aux, batch, ids_per_slot, bags_per_slot)


@transform_ids_masked.register_fake
def _fake(values, lengths, slot_params, aux, batch, ids_per_slot, bags_per_slot):
    total = sum(ids_per_slot)
    return (values.new_empty(total), values.new_empty(sum(bags_per_slot) + 1),
            values.new_empty(total, dtype=torch.float32))


@transform_ids_masked.register_kernel("cuda")
def _cuda(values, lengths, slot_params, aux, batch, ids_per_slot, bags_per_slot):
    try:
        from recsys_kernels import triton_masked
    except ImportError:  # no Triton: the vectorised torch version runs on the device, same results
        return masked_torch(values, lengths, slot_params, aux, batch, ids_per_slot, bags_per_slot)
    return triton_masked.transform_ids_masked(values, lengths, slot_params, aux, batch, ids_per_slot, bags_per_slot)
