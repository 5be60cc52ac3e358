"""Id transforms: one logical feature's jagged ids → jagged ids for each of its lookup slots.

A transform takes the ids of one logical feature for a batch, ``values`` (N,) int64 and
``lengths`` (B,) int32/int64 (ids per bag), and returns one ``(values, lengths)`` pair per
lookup slot of the feature, in the slot order of its :class:`~recsys.embeddings.plan.FeaturePlan`.
Every transform is vectorised (no loop over ids or bags) and TorchScript-able.

A slot's ``lengths`` normally has B entries (bags are pooled in the lookup). Transforms built
with ``per_id=True`` instead emit one bag per id (``lengths`` = N ones): the lookup then returns
each id's row, so a non-linear combiner (the compositional product, OptEmbed's row mask) can be
applied per id before pooling, as the papers define it.
"""

from typing import List, Tuple

import torch
from torch import nn

from recsys.embeddings.hash_functions import hash_to_rows

JaggedIds = Tuple[torch.Tensor, torch.Tensor]


def _bag_lengths(values: torch.Tensor, lengths: torch.Tensor, per_id: bool) -> torch.Tensor:
    if per_id:
        return torch.ones_like(values)
    return lengths


class Identity(nn.Module):
    """The frequency rank is the row: full tables, and with ``per_id`` OptEmbed's supernet,
    whose combiner masks each id's row before pooling."""

    def __init__(self, per_id: bool = False) -> None:
        super().__init__()
        self.per_id = per_id

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        return [(values, _bag_lengths(values, lengths, self.per_id))]


class HashRows(nn.Module):
    """The hashing trick: ``hash(id, seed) mod rows`` (or plain ``id mod rows``)."""

    def __init__(self, rows: int, key: int, modulo: bool) -> None:
        super().__init__()
        self.rows = rows
        self.key = key
        self.modulo = modulo

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        if self.modulo:
            return [(values % self.rows, lengths)]
        return [(hash_to_rows(values, self.key, self.rows), lengths)]


class MixedRadixDigits(nn.Module):
    """Complementary partitions (Shi et al., 2020): id → k digits of a mixed-radix number.

    With radices ``(r_1, ..., r_{k-1})`` the digits are the chained quotient-remainder
    ``id % r_{k-1}``, ``(id // r_{k-1}) % r_{k-2}``, ..., and the final quotient; distinct ids
    (below the product of all table sizes) always get distinct digit tuples. k = 2 is the
    quotient-remainder trick: ``(id // m, id % m)``. Digits are emitted most significant first.
    """

    radices: List[int]

    def __init__(self, radices: List[int], per_id: bool) -> None:
        super().__init__()
        self.radices = radices  # least significant last
        self.per_id = per_id

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        bag = _bag_lengths(values, lengths, self.per_id)
        digits: List[torch.Tensor] = []
        rest = values
        for i in range(len(self.radices) - 1, -1, -1):
            radix = self.radices[i]
            digits.append(rest % radix)
            rest = torch.div(rest, radix, rounding_mode="floor")
        digits.append(rest)
        digits.reverse()
        return [(d, bag) for d in digits]


class FrequencyBlocks(nn.Module):
    """Mixed-dimension blocks (Ginart et al., 2021): frequency rank → (block, row in block).

    ``boundaries`` (k+1,) are the first rank of each block and the table size; ranks are
    frequency ranks, so each block is a contiguous rank range. Each block is one slot; a bag's
    ids are routed to their blocks, so a slot's bag holds only the ids of that block (and is
    empty when there are none). Only the blocks in ``kept`` have slots: a block the α rule gave
    dimension 0 has no table, and its ids contribute nothing.
    """

    kept: List[int]

    def __init__(self, boundaries: List[int], kept: List[int]) -> None:
        super().__init__()
        self.register_buffer("starts", torch.tensor(boundaries[:-1], dtype=torch.int64), persistent=False)
        self.num_blocks = len(boundaries) - 1
        self.kept = kept

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        batch = lengths.numel()
        block = torch.bucketize(values, self.starts, right=True) - 1  # (N,)
        rows = values - self.starts[block]
        bag = torch.repeat_interleave(torch.arange(batch, device=values.device), lengths.long(), output_size=values.numel())
        key = block * batch + bag  # block-major, then bag: the slot layout
        order = torch.argsort(key, stable=True)
        counts = torch.bincount(key, minlength=self.num_blocks * batch).view(self.num_blocks, batch)
        sorted_rows = rows[order]
        block_sizes: List[int] = counts.sum(dim=1).tolist()
        per_block = torch.split(sorted_rows, block_sizes)
        out: List[JaggedIds] = []
        for b in self.kept:
            out.append((per_block[b], counts[b].to(lengths.dtype)))
        return out


class MultiProbeHash(nn.Module):
    """Unified embedding (Coleman et al., 2023): k probes of one feature into a shared table,
    each with its own seeded hash (the feature's seeds differ from every other feature's)."""

    keys: List[int]

    def __init__(self, rows: int, keys: List[int]) -> None:
        super().__init__()
        self.rows = rows
        self.keys = keys

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        return [(hash_to_rows(values, key, self.rows), lengths) for key in self.keys]


class RemapRows(nn.Module):
    """A stored id → row map (OptEmbed's compaction: kept rows renumbered, pruned ids → one
    shared OOV row)."""

    def __init__(self, remap: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("remap", remap.to(torch.int64))

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        return [(self.remap[values], lengths)]
