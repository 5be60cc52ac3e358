"""The embedding module every model plugs into: KeyedJaggedTensor → KeyedTensor.

:class:`EmbeddingCollection` follows torchrec's ``EmbeddingBagCollectionInterface``. It runs a
compiled :class:`~recsys.embeddings.plan.EmbeddingPlan`:

    logical KJT ──per-feature id transform──▶ slot ids ──ONE table-batched lookup──▶ slot vectors
        ──per-feature combiner──▶ one ``dim``-wide vector per feature (a KeyedTensor)

The id transforms of all features run as one ``recsys::transform_ids`` call (``kernels/``, see
:mod:`recsys.embeddings.fused_transforms`; on a GPU ``recsys::transform_ids_masked``, whose
dropped ids reach the lookup as weight-0 samples), or feature by feature through the plan's modules
where the C++ kernels are not built. The lookup covers every physical table of the model in a
single FBGEMM call with the optimizer fused into its backward, whatever the methods. For a
sharded run (``shardable=True``) the lookup is instead a torchrec ``EmbeddingBagCollection`` over
the same tables (:class:`~recsys.embeddings.sharding.ShardableLookup`), which
DistributedModelParallel shards. Slots whose combiner needs each id's row
(compositional ``mult``, OptEmbed masks) get one bag per id; when a batch's bags are not all
single ids, the call uses FBGEMM's variable-batch layout so those slots can have more bags.
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.distributed as dist
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from recsys.embeddings.fused_transforms import FusedTransforms, MaskedTransforms, fused_transforms_for
from recsys.embeddings.memory import MemoryReport
from recsys.embeddings.placement import TieredLookup, tiered_lookup
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.plan import EmbeddingPlan
from recsys.embeddings.combiners import ProjectedSum, Single
from recsys.embeddings.grouped_projection import GroupedProjection
from recsys.embeddings.sharding import ShardableLookup
from recsys.embeddings.tables import TableBatchedLookup
from recsys.embeddings.specs import TableOptimizerConfig
from recsys.embeddings.transforms import Identity


class FeatureModule(nn.Module):
    """One logical feature's transform and combiner, and which slots it reads."""

    def __init__(self, transform: nn.Module, combiner: nn.Module, slots: List[int]) -> None:
        super().__init__()
        self.transform = transform
        self.combiner = combiner
        self.slots = slots


class EmbeddingCollection(nn.Module):
    """Runs an embedding plan.

    Args:
        plan: the compiled plan (see :func:`recsys.embeddings.compiler.compile_plan`).
        optimizer: the table optimizer fused into the lookup's backward.
        device: where tables live and the lookup runs.
        seed: initial-weight seed.
        fuse_transforms: run all features' id transforms as one ``recsys::transform_ids`` call
            (:mod:`recsys.embeddings.fused_transforms`); False runs each feature's transform
            module (the reference; also the fallback where the C++ kernels are not built).
        shardable: look up through a torchrec collection that DistributedModelParallel shards
            (its tables stay unallocated until then) instead of the direct FBGEMM call.
        placement: tiers of the tables (:mod:`recsys.embeddings.placement`): with a
            ``ram_budget`` that the tables exceed, hot prefixes stay in RAM and cold tails go
            to disk (sharded: two collections, the budget each rank's); on a GPU, ``hot_tier`` puts the tables in device memory, in host memory
            behind FBGEMM's GPU cache (``uvm_cache``) or in host memory (``host``).
    """

    def __init__(
        self,
        plan: EmbeddingPlan,
        optimizer: TableOptimizerConfig,
        device: torch.device | str = "cpu",
        seed: int = 0,
        fuse_transforms: bool = True,
        shardable: bool = False,
        placement: PlacementConfig | None = None,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.features = [f.name for f in plan.features]
        self.dim = plan.dim
        self.device = torch.device(device)
        slot_tables = [s.table for s in plan.slots]
        self.lookup: nn.Module
        ranks = (dist.get_world_size() if dist.is_initialized() else 1) if shardable else None
        tiered = tiered_lookup(plan.tables, optimizer, placement, self.device, seed, slot_tables, ranks) if placement else None
        direct = tiered is None and not shardable  # one TableBatchedLookup
        self.feature_modules = nn.ModuleList([FeatureModule(f.transform, f.combiner, f.slots) for f in plan.features])
        self.slot_dims = [s.dim for s in plan.slots]
        # the lookup output splits into one column block per feature (split, not slicing: the
        # backward of one split is one concatenation, of F slices F full-size zero tensors)
        self.column_order, self.column_widths = _feature_columns(plan)
        in_order = [s for f in plan.features for s in f.slots] == list(range(len(plan.slots)))
        # the lookup output already is the answer when every combiner keeps its slots as they are
        self.identity_output = in_order and all(isinstance(f.combiner, Single) for f in plan.features)
        # mixed-dimension features: every projection in one batched matmul (the per-feature
        # combiners stay the reference, and serve the variable-batch layout and export)
        grouped = in_order and all(isinstance(f.combiner, ProjectedSum) and f.combiner.full <= 1 for f in plan.features)
        self.grouped_projection = None
        if grouped:
            widths = [self.column_widths[block] for block in self.column_order]
            self.grouped_projection = GroupedProjection([f.combiner for f in plan.features],
                                                        [sum(self.column_widths[:block]) for block in self.column_order], widths)
        # and the logical KJT already is the physical one when, besides, every transform is the identity
        self.passthrough = self.identity_output and all(isinstance(f.transform, Identity) for f in plan.features)
        fuse = fuse_transforms and not self.passthrough
        weighted_lookup = direct and optimizer.weight_decay == 0
        self.fused_transforms = fused_transforms_for(plan, self.device, weighted_lookup) if fuse else None
        if tiered is not None:
            self.lookup = tiered
        elif shardable:
            self.lookup = ShardableLookup(plan.tables, optimizer, slot_tables, seed=seed, placement=placement,
                                          device_type=self.device.type)
        else:
            self.lookup = TableBatchedLookup(plan.tables, optimizer, device=device, seed=seed, slot_tables=slot_tables,
                                             placement=placement)
        for part in (self.feature_modules, self.fused_transforms, self.grouped_projection):  # the lookup placed itself
            if part is not None:
                part.to(self.device)

    @property
    def output_dims(self) -> list[int]:
        return [self.dim] * len(self.features)

    def memory(self) -> MemoryReport:
        return self.plan.memory(self.lookup.optimizer_config.kind)

    def tiers(self) -> dict | None:
        """Bytes per placement tier and the fast tier's hit rate; None for tables wholly in the
        device's own memory."""
        return self.lookup.tiers()

    def regularization(self) -> torch.Tensor:
        """The methods' extra loss terms (OptEmbed's threshold regulariser); 0 for most.

        A combiner that has one defines ``regularization() -> Tensor``; training adds the sum
        to the loss.
        """
        total = torch.zeros((), device=self.device)
        for module in self.feature_modules:
            if hasattr(module.combiner, "regularization"):
                total = total + module.combiner.regularization()
        return total

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        if features.keys() != self.features:
            raise KeyError(f"expected sparse features {self.features}, got {features.keys()}")
        if self.passthrough:
            pooled = self.lookup(features.values(), features.offsets())  # (B, F * D)
            return KeyedTensor(keys=self.features, length_per_key=self.output_dims, values=pooled)
        return KeyedTensor(keys=self.features, length_per_key=self.output_dims, values=self._combine(features))

    @property
    def prefetches_global_batch(self) -> bool:
        """Whether :meth:`prefetch` takes the whole global batch (a sharded disk tier: each rank
        reads ahead the cold rows it holds, whichever rank's slice looks them up)."""
        return isinstance(self.lookup, TieredLookup) and self.lookup.shardable and self.lookup.reads_ahead

    def prefetch(self, features: KeyedJaggedTensor) -> None:
        """Start reading from slow tiers what a later forward of ``features`` looks up (the cold
        rows of disk-tier tables, :meth:`~recsys.embeddings.placement.TieredLookup.prefetch`):
        the training loop calls it with the next batch (the global one where
        :attr:`prefetches_global_batch`), so the reads overlap the current step.
        Results do not change; without a disk tier it does nothing."""
        if not (isinstance(self.lookup, TieredLookup) and self.lookup.reads_ahead):
            return
        if self.passthrough:
            self.lookup.prefetch(features.values(), features.offsets())
            return
        ids, offsets, bags_per_slot, _ = self.slot_ids(features)  # an id of weight 0 is read all the same
        self.lookup.prefetch(ids, offsets, None if all(b == features.stride() for b in bags_per_slot) else bags_per_slot)

    def slot_ids(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor, List[int], Optional[torch.Tensor]]:
        """The physical KJT the lookup takes: ids (M,), offsets (Σ bags + 1,), bags per slot, and
        per-id weights (M,) where some are 0 (:class:`MaskedTransforms`), else None."""
        batch = features.stride()
        if isinstance(self.fused_transforms, MaskedTransforms):
            return self.fused_transforms(features)
        if self.fused_transforms is not None:
            slots = self.fused_transforms(features.values(), features.lengths(), batch)
            bags = [batch] * len(self.slot_dims) if self.fused_transforms.all_pooled else slots.bags_per_slot.tolist()
            return slots.values, slots.offsets, bags, None
        lengths = features.lengths().view(len(self.features), batch)  # (F, B)
        values = torch.split(features.values(), features.length_per_key())
        slot_values: List[torch.Tensor] = [torch.empty(0)] * len(self.slot_dims)
        slot_lengths: List[torch.Tensor] = [torch.empty(0)] * len(self.slot_dims)
        for f, module in enumerate(self.feature_modules):
            for slot, (ids, bags) in zip(module.slots, module.transform(values[f], lengths[f])):
                slot_values[slot] = ids
                slot_lengths[slot] = bags
        offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(torch.cat(slot_lengths).long())
        return torch.cat(slot_values).long(), offsets, [int(b.numel()) for b in slot_lengths], None

    def _combine(self, features: KeyedJaggedTensor) -> torch.Tensor:
        batch = features.stride()
        lengths = features.lengths().view(len(self.features), batch)  # (F, B)
        ids, offsets, bags_per_slot, weights = self.slot_ids(features)
        options = {} if weights is None else {"per_sample_weights": weights}
        if isinstance(self.fused_transforms, FusedTransforms) and isinstance(self.lookup, TableBatchedLookup):
            options["ids_checked"] = True  # the op checked every row against its table
        if all(b == batch for b in bags_per_slot):
            flat = self.lookup(ids, offsets, **options)  # (B, Σ slot dims)
            if self.identity_output:
                return flat
            if self.grouped_projection is not None:
                return self.grouped_projection(flat)
            blocks = torch.split(flat, self.column_widths, dim=1)  # views, in slot order
            per_feature = [blocks[i] for i in self.column_order]
        else:
            flat = self.lookup(ids, offsets, bags_per_slot, **options)  # variable batch: Σ bags_s * dim_s
            sizes = [b * d for b, d in zip(bags_per_slot, self.slot_dims)]
            slot_out = [chunk.view(b, d) for chunk, b, d in zip(torch.split(flat, sizes), bags_per_slot, self.slot_dims)]
            per_feature = [torch.cat([slot_out[s] for s in module.slots], dim=1) for module in self.feature_modules]
        outputs = [module.combiner(per_feature[f], lengths[f]) for f, module in enumerate(self.feature_modules)]
        return torch.cat(outputs, dim=1)  # (B, F * D)


def _feature_columns(plan: EmbeddingPlan) -> tuple[list[int], list[int]]:
    """How the lookup output splits into per-feature column blocks.

    Returns (for each feature, the index of its block; the blocks' widths in slot order).
    A feature's slots must be consecutive.
    """
    for feature in plan.features:
        first = feature.slots[0] if feature.slots else 0
        if feature.slots != list(range(first, first + len(feature.slots))):
            raise ValueError(f"feature {feature.name}: its slots {feature.slots} are not consecutive")
    by_first_slot = sorted(range(len(plan.features)), key=lambda f: plan.features[f].slots[0] if plan.features[f].slots else -1)
    widths = [sum(plan.slots[s].dim for s in plan.features[f].slots) for f in by_first_slot]
    order = [0] * len(plan.features)
    for block, f in enumerate(by_first_slot):
        order[f] = block
    return order, widths
