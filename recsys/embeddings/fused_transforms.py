"""All features' id transforms in one op call: a plan's transforms folded into tensors.

:class:`EmbeddingCollection` feeds its single lookup with slot ids. The per-feature modules of
:mod:`recsys.embeddings.transforms` make them one feature at a time (tens of small tensor ops
each, in Python); with many features and 2048-row batches that loop costs more than the
lookup. :class:`FusedTransforms` reads each feature's transform once, at construction, and
writes its parameters as rows of a ``(S, 5)`` tensor (one per lookup slot: kind, feature,
per-id flag, two parameters) plus one ``aux`` tensor for stored maps; ``forward`` is then ONE
call of ``recsys::transform_ids`` (``kernels/``), which emits the slot KJT's values and
offsets directly, bit-identical to the modules (which stay the reference, and the path
TorchScript/export users and machines without the C++ build run).

Mixed-dimension blocks (Ginart et al., 2021) can be laid out two ways. ``padded``: each block
slot has B bags, empty where a bag has no id in the block (the modules' layout; what FBGEMM's
pooled lookup takes). ``per_id``: each block slot has one bag per routed id and no empty bags
(FBGEMM's variable-batch layout), with ``id_bags`` naming each routed id's bag so the combiner
pools after projecting. On CPU, FBGEMM 1.8 builds its variable-batch metadata with one small
tensor op per bag, which made the lookup about 40x slower than the padded one on Kaggle-shaped
batches (benchmarks/bench_kernels.py measures both), so training uses ``padded``.

On a GPU, :class:`MaskedTransforms` runs ``recsys::transform_ids_masked`` instead (Triton on
CUDA), whose blocks keep every id with a weight of 0 for the ids they do not take, so no size
depends on the ids and the host never waits for the device.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import re
from typing import Optional

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.embeddings.kernels import kernels_unavailable, recsys_kernels
from recsys.embeddings.optembed_modules import DropRows
from recsys.embeddings.plan import EmbeddingPlan
from recsys.embeddings.transforms import (
    FrequencyBlocks,
    HashRows,
    Identity,
    MixedRadixDigits,
    MultiProbeHash,
    RemapRows,
)

log = logging.getLogger(__name__)
_NO_END = torch.iinfo(torch.int64).max  # the last frequency block takes every larger rank


class BlockLayout(str, enum.Enum):
    padded = "padded"
    per_id = "per_id"


@dataclasses.dataclass
class SlotIds:
    """The slot KJT of a batch, as the lookup takes it.

    Attributes:
        values: (M,) int64 rows, slots major.
        offsets: (Σ bags + 1,) int64.
        bags_per_slot: (S,) int64: B for pooled slots, the ids emitted for per-id slots.
        id_bags: (M,) int64 the bag each emitted id belongs to.
    """

    values: torch.Tensor
    offsets: torch.Tensor
    bags_per_slot: torch.Tensor
    id_bags: torch.Tensor


class _ParamRows:
    """Collects slot parameter rows and the aux maps they point into."""

    def __init__(self) -> None:
        self.rows: dict[int, list[int]] = {}
        self.aux: list[torch.Tensor] = []
        self.aux_size = 0

    def add(self, slot: int, kind: int, feature: int, per_id: bool, a: int = 0, b: int = 0) -> None:
        self.rows[slot] = [kind, feature, int(per_id), a, b]

    def stored(self, table: torch.Tensor) -> int:
        """Offset of ``table`` (int64) in aux."""
        offset = self.aux_size
        self.aux.append(table.to(torch.int64).reshape(-1))
        self.aux_size += table.numel()
        return offset


def fold_plan(plan: EmbeddingPlan, blocks: BlockLayout = BlockLayout.padded) -> tuple[torch.Tensor, torch.Tensor]:
    """The plan's transforms as ``recsys::transform_ids`` parameters: ((S, 5) int64, (A,) int64).

    Raises:
        TypeError: a feature's transform has no fused kind (name and type given).
    """
    K = recsys_kernels.SlotKind
    out = _ParamRows()
    for f, feature in enumerate(plan.features):
        t, slots = feature.transform, feature.slots
        if isinstance(t, Identity):
            out.add(slots[0], K.IDENTITY, f, t.per_id)
        elif isinstance(t, HashRows):
            if t.modulo:
                out.add(slots[0], K.MODULO, f, False, t.rows)
            else:
                out.add(slots[0], K.HASH, f, False, t.key, t.rows)
        elif isinstance(t, MultiProbeHash):
            for slot, key in zip(slots, t.keys):
                out.add(slot, K.HASH, f, False, key, t.rows)
        elif isinstance(t, MixedRadixDigits):
            # digit j (most significant first) = (id // Π radices[j:]) % radices[j-1]; the first has no modulus
            for j, slot in enumerate(slots):
                out.add(slot, K.DIGIT, f, t.per_id, math.prod(t.radices[j:]), t.radices[j - 1] if j else 0)
        elif isinstance(t, FrequencyBlocks):
            starts = t.starts.tolist()
            ends = starts[1:] + [_NO_END]
            for slot, block in zip(slots, t.kept):
                out.add(slot, K.BLOCK, f, blocks is BlockLayout.per_id, starts[block], ends[block])
        elif isinstance(t, RemapRows):
            out.add(slots[0], K.REMAP, f, False, out.stored(t.remap), t.remap.numel())
        elif isinstance(t, DropRows):
            out.add(slots[0], K.KEEP, f, False, out.stored(t.keep), t.keep.numel())
        else:
            raise TypeError(f"feature {feature.name}: transform {type(t).__name__} has no fused kind in recsys::transform_ids")
    missing = [s for s in range(len(plan.slots)) if s not in out.rows]
    if missing:
        raise ValueError(f"slots {missing} are fed by no feature's transform")
    params = torch.tensor([out.rows[s] for s in range(len(plan.slots))], dtype=torch.int64).view(-1, recsys_kernels.SLOT_PARAM_COLUMNS)
    aux = torch.cat(out.aux) if out.aux else torch.zeros(0, dtype=torch.int64)
    return params, aux


class FusedTransforms(nn.Module):
    """Every feature's id transform of a plan in one ``recsys::transform_ids`` call.

    Args:
        plan: the compiled plan; its transforms are read once, here.
        blocks: the layout of mixed-dimension block slots (see the module docstring).
    """

    def __init__(self, plan: EmbeddingPlan, blocks: BlockLayout = BlockLayout.padded) -> None:
        super().__init__()
        params, aux = fold_plan(plan, blocks)
        self.register_buffer("slot_params", params, persistent=False)
        self.register_buffer("aux", aux, persistent=False)
        # the op checks every row against its slot's table: the lookup needs no bounds check
        self.register_buffer("slot_rows", torch.tensor([plan.tables[s.table].num_embeddings for s in plan.slots],
                                                       dtype=torch.int64), persistent=False)
        self.feature_names = [f.name for f in plan.features]
        # every slot pooled: each has B bags, known without reading the op's output (on a GPU
        # that read would wait for the device)
        self.all_pooled = not bool(params[:, 2].any())

    def forward(self, values: torch.Tensor, lengths: torch.Tensor, batch: int) -> SlotIds:
        """Args: a KJT's ``values()`` (N,), ``lengths()`` (F*B,) and B.

        Raises:
            RuntimeError: an id the plan cannot look up (negative, or beyond its feature's
                table), naming the feature.
        """
        try:
            return SlotIds(*torch.ops.recsys.transform_ids(values, lengths, batch, self.slot_params, self.aux, self.slot_rows))
        except RuntimeError as err:  # the op knows features by index: name them
            named = re.sub(r"feature #(\d+)", lambda m: f"feature {self.feature_names[int(m[1])]}", str(err))
            raise RuntimeError(named) from err


class MaskedTransforms(nn.Module):
    """Every feature's id transform in one ``recsys::transform_ids_masked`` call, for GPUs.

    Slots that take only some of their feature's ids (frequency blocks, OptEmbed's kept rows)
    keep every id with a per-sample weight of 0 for the dropped ones (see
    ``kernels/recsys_kernels/masked.py``), so every size is known on the host from the batch's
    ``length_per_key`` and the forward never waits for the device (on CUDA the op is Triton).
    Per-id slots must take every id (true of every plan recsys compiles).

    Args:
        plan: the compiled plan, blocks in the padded layout.

    Raises:
        ValueError: a per-id slot drops ids.
    """

    def __init__(self, plan: EmbeddingPlan) -> None:
        super().__init__()
        params, aux = fold_plan(plan)
        self.register_buffer("slot_params", params, persistent=False)
        self.register_buffer("aux", aux, persistent=False)
        kinds, self.slot_features, per_id = params[:, 0].tolist(), params[:, 1].tolist(), params[:, 2].tolist()
        K = recsys_kernels.SlotKind
        filters = [k in (K.BLOCK, K.KEEP) for k in kinds]  # slots that take only some ids
        dropping = [plan.slots[s].table for s, (f, p) in enumerate(zip(filters, per_id)) if f and p]
        if dropping:
            raise ValueError(f"per-id slots of tables {dropping} drop ids: the masked transforms cannot size them")
        self.slot_per_id = [bool(p) for p in per_id]
        self.weighted = any(filters)  # else every weight is 1 and the lookup goes unweighted

    def op_args(self, features: KeyedJaggedTensor) -> tuple:
        """The arguments of ``recsys::transform_ids_masked`` for ``features`` (sizes from its
        ``length_per_key``, which the loader's batches carry: no wait for the device)."""
        batch, per_feature = features.stride(), features.length_per_key()
        ids = [per_feature[f] for f in self.slot_features]
        bags = [n if per_id else batch for n, per_id in zip(ids, self.slot_per_id)]
        return features.values(), features.lengths(), self.slot_params, self.aux, batch, ids, bags

    def forward(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor, list[int], Optional[torch.Tensor]]:
        """The slot KJT of ``features``: rows (M,), offsets (L + 1,), bags per slot, weights (M,) or None."""
        args = self.op_args(features)
        rows, offsets, weights = torch.ops.recsys.transform_ids_masked(*args)
        return rows, offsets, args[-1], weights if self.weighted else None


def fused_transforms_for(plan: EmbeddingPlan, device: torch.device, weighted_lookup: bool) -> Optional[nn.Module]:
    """The fused transforms of ``plan`` on ``device``, or None where the modules must run.

    On the CPU: :class:`FusedTransforms` (the C++ kernel). On a GPU: :class:`MaskedTransforms`,
    which never waits for the device, where its weights can reach the lookup
    (``weighted_lookup``: a lookup that takes per-sample weights and whose fused optimizer has
    no weight decay) or the plan drops no ids. Else, with a warning saying why, None: the
    per-feature modules run (the kernels are not built, a transform has no fused kind, or on a
    GPU the plan needs weights the lookup cannot take).
    """
    if device.type != "cpu":
        if recsys_kernels is None:
            reason = kernels_unavailable()  # the package is missing
        else:
            masked = MaskedTransforms(plan)
            if weighted_lookup or not masked.weighted:
                return masked
            reason = f"the lookup on {device} takes no per-sample weights (sharded, or weight decay) and the plan drops ids"
    else:
        reason = kernels_unavailable()
        if not reason:
            try:
                return FusedTransforms(plan)
            except TypeError as err:
                reason = str(err)
    log.warning("id transforms run one feature at a time (slower, same results): %s", reason)
    return None
