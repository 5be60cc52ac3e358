"""The embedding plan at inference: single-hot ranks → id transforms → ONE quantized lookup → combiners.

:class:`InferenceEmbedding` mirrors :class:`recsys.embeddings.collection.EmbeddingCollection`
for serving. It is built from what every method compiles to (the plan's physical tables,
slots, id transforms and combiners) and the trained weights by table name, never from the
training lookup's internals, so it serves every method alike:

    ranks (B, F) ──per-feature id transform──▶ slot ids ──ONE IntNBit table-batched lookup──▶
        slot vectors (B, Σ slot dims) ──per-feature combiner──▶ (B, F * D)

Criteo features are single-hot (one id per row and feature, the missing value is an id too),
so every slot has exactly B bags of one id each and the offsets are ``0..S*B``. Three parts
of a plan are served differently from training, with the same result:

- mixed-dimension blocks route each bag's ids to their block; with one id per bag, a block's
  slot instead gets the id's row in the block or -1, which FBGEMM's lookup skips (a zero
  vector, as an empty bag gives);
- the compositional product pools per id; with one id per bag the product is the pooled vector;
- OptEmbed's stored id → row map moves into FBGEMM's per-table index remapping.
"""


import copy
from typing import Dict, List, Optional

import torch
from torch import nn

from recsys.embeddings.combiners import Product, Single, product_of_parts
from recsys.embeddings.plan import EmbeddingPlan
from recsys.embeddings.transforms import FrequencyBlocks, Identity, JaggedIds, RemapRows
from recsys.serving.config import Quantize
from recsys.serving.tables import inference_tables


class SingleHotFrequencyBlocks(nn.Module):
    """Mixed-dimension blocks (Ginart et al., 2021) for single-hot bags: rank → for each kept
    block, the row in that block, or -1 (no row: FBGEMM adds nothing) when the rank is in
    another block."""

    kept: List[int]

    def __init__(self, blocks: FrequencyBlocks) -> None:
        super().__init__()
        self.register_buffer("starts", blocks.starts.clone())
        self.kept = list(blocks.kept)

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        block = torch.bucketize(values.contiguous(), self.starts, right=True) - 1  # (B,)
        rows = values - self.starts[block]
        return [(torch.where(block == b, rows, -1), lengths) for b in self.kept]


class InferenceFeature(nn.Module):
    """One logical feature: its id transform, its combiner, and its columns of the lookup output."""

    def __init__(self, transform: nn.Module, combiner: nn.Module, slots: List[int], start: int, width: int) -> None:
        super().__init__()
        self.transform = copy.deepcopy(transform)
        self.combiner = copy.deepcopy(combiner)
        self.slots = slots
        self.start = start
        self.width = width


class SingleHotProduct(nn.Module):
    """Compositional ``mult`` (Shi et al., 2020) for single-hot bags: each bag is one id, so the
    element-wise product of its k partition rows is already the pooled vector (no data-dependent
    pooling, which ``torch.export`` could not trace)."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.parts = parts

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return product_of_parts(x, self.parts)  # (B, d)


def _serving_transform(transform: nn.Module) -> nn.Module:
    if isinstance(transform, FrequencyBlocks):
        return SingleHotFrequencyBlocks(transform)
    return transform


def _serving_combiner(combiner: nn.Module) -> nn.Module:
    if isinstance(combiner, Product):
        return SingleHotProduct(combiner.parts)
    return combiner


class InferenceEmbedding(nn.Module):
    """A plan's lookup for serving (see the module docstring).

    Args:
        plan: the compiled plan of the trained model.
        weights: each physical table's trained (rows, dim) float32 weights, by table name
            (``lookup.table_weights()`` of the training module).
        quantize: row format of the inference tables.

    Forward takes ``ranks`` (B, F) int64 frequency ranks in the plan's feature order and returns
    (B, F * D) float32.
    """

    def __init__(self, plan: EmbeddingPlan, weights: Dict[str, torch.Tensor], quantize: Quantize) -> None:
        super().__init__()
        missing = [t.name for t in plan.tables if t.name not in weights]
        if missing:
            raise KeyError(f"no trained weights for physical tables {missing}")
        readers = [[s for s, slot in enumerate(plan.slots) if slot.table == t] for t in range(len(plan.tables))]
        remaps: List[Optional[torch.Tensor]] = [None] * len(plan.tables)
        starts = [0]
        for slot in plan.slots:
            starts.append(starts[-1] + slot.dim)
        features = []
        for feature in plan.features:
            first = feature.slots[0] if feature.slots else 0
            if feature.slots != list(range(first, first + len(feature.slots))):
                raise ValueError(f"feature {feature.name}: its slots {feature.slots} are not consecutive")
            transform = _serving_transform(feature.transform)
            if isinstance(transform, RemapRows) and readers[plan.slots[first].table] == [first]:
                remaps[plan.slots[first].table] = transform.remap  # FBGEMM remaps this table's ids
                transform = Identity()
            width = starts[first + len(feature.slots)] - starts[first]
            features.append(InferenceFeature(transform, _serving_combiner(feature.combiner), list(feature.slots), starts[first], width))
        self.features = nn.ModuleList(features)
        self.num_slots = len(plan.slots)
        self.dim = plan.dim
        tables = [(t.name, weights[t.name]) for t in plan.tables]
        self.tables = inference_tables(tables, [s.table for s in plan.slots], quantize, remaps)
        in_order = [s for f in plan.features for s in f.slots] == list(range(len(plan.slots)))
        # the lookup output already is the answer when every combiner keeps its slots as they are
        self.identity_output = in_order and all(
            isinstance(f.combiner, Single) and f.width == plan.dim for f in features
        )

    def forward(self, ranks: torch.Tensor) -> torch.Tensor:
        batch = ranks.shape[0]
        lengths = torch.ones(batch, dtype=torch.int64, device=ranks.device)
        slot_ids: List[torch.Tensor] = [torch.empty(0, dtype=torch.int64)] * self.num_slots
        for f, feature in enumerate(self.features):
            for slot, ids in zip(feature.slots, feature.transform(ranks[:, f], lengths)):
                slot_ids[slot] = ids[0]
        indices = torch.cat(slot_ids)  # (S * B,) slots major
        offsets = torch.arange(indices.numel() + 1, dtype=torch.int64, device=ranks.device)
        flat = self.tables(indices, offsets)  # (B, Σ slot dims)
        if self.identity_output:
            return flat
        outputs: List[torch.Tensor] = []
        for feature in self.features:
            outputs.append(feature.combiner(flat.narrow(1, feature.start, feature.width), lengths))
        return torch.cat(outputs, dim=1)  # (B, F * D)
