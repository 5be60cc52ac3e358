"""A row range of every physical table in one FBGEMM call, cut into pieces FBGEMM can address.

FBGEMM's CPU backward with the fused row-wise Adagrad (``EXACT_ROWWISE_ADAGRAD``, fbgemm-gpu 1.8)
addresses a row within its table by a 32-bit byte offset: in a table of more than 4 GiB of
weights, the update of row r lands on row r - 2^32 / (4 dim) (or a multiple), silently; the
forward reads the right row. The 1TB logs' 40M-row tables at dim 64 are 10 GB
(``tests/embeddings/test_row_ranges.py`` shows it on a sparse file). :class:`RowRangeLookup`
therefore cuts each table's range into pieces of at most :data:`MAX_PIECE_BYTES` of weights,
each its own FBGEMM table; the pieces of one table are consecutive in FBGEMM's flat weights, so
the layout in memory (and in a memory-mapped file) is that of the uncut tables.

An id goes to the piece its row falls in: ``level`` j of a table is its j-th piece. FBGEMM's
features are the (piece, slot) pairs, in piece order (FBGEMM counts a feature's rows from where
the next feature's table starts, so features must follow their tables); the ids are sorted into
that order, stably so that each bag keeps its ids. With one piece a table the ids already are in
it (slot-major, bag-minor), and a mask of the range's ids is all it takes. Sum pooling commutes
with the split: each slot's pooled vector is the sum of its pieces' pooled vectors.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from recsys.embeddings.specs import TableOptimizerConfig
from recsys.embeddings.tables import (
    FBGEMM_CPU_MAX_TABLE_BYTES,
    PhysicalTable,
    TableBatchedLookup,
)

MAX_PIECE_BYTES = FBGEMM_CPU_MAX_TABLE_BYTES  # weights of one piece at most


def piece_rows(dim: int) -> int:
    """The most rows of width ``dim`` (float32) one FBGEMM table may have on the CPU."""
    return MAX_PIECE_BYTES // (dim * 4)


def row_pieces(lo: int, hi: int, dim: int) -> list[tuple[int, int]]:
    """(first row, rows) of the pieces that cut rows ``[lo, hi)`` of a table of width ``dim``."""
    cap = piece_rows(dim)
    return [(start, min(cap, hi - start)) for start in range(lo, hi, cap)]


class RowRangeLookup(nn.Module):
    """Rows ``[lo_t, hi_t)`` of each table ``t``, in one FBGEMM call (a tier of
    :class:`~recsys.embeddings.placement.TieredLookup`).

    Args:
        tables: the whole physical tables.
        lo, hi: the row range of each table this lookup holds (empty where ``lo == hi``).
        optimizer: the fused table optimizer.
        slot_tables: the table each lookup slot reads.
        tag: suffix of the pieces' names (``C1_cold``, ``C1_cold1``, ...).
        host_buffers: FBGEMM's ``preallocated_host_buffers`` (e.g. a memory-mapped file).
        make_lookup: builds the lookup over the pieces instead of one
            :class:`~recsys.embeddings.tables.TableBatchedLookup` (a sharded run's torchrec
            collection), from the pieces, the piece each of its slots reads, and per piece its
            whole table's index and first row; it takes the same ``(values, offsets, bags_per_slot)``.
    """

    def __init__(
        self,
        tables: list[PhysicalTable],
        lo: list[int],
        hi: list[int],
        optimizer: TableOptimizerConfig,
        slot_tables: list[int],
        tag: str,
        host_buffers: dict[str, torch.Tensor] | None = None,
        make_lookup: Callable[[list[PhysicalTable], list[int], list[tuple[int, int]]], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.num_slots = len(slot_tables)
        self.slot_dims = [tables[t].dim for t in slot_tables]
        pieces: list[PhysicalTable] = []
        origins: list[tuple[int, int]] = []  # per piece: its table's index, its first row
        self.first_rows: list[list[int]] = []  # per table: the first row of each of its pieces
        first_piece = []  # per table: index of its first piece
        for i, t in enumerate(tables):
            spans = row_pieces(lo[i], hi[i], t.dim)
            first_piece.append(len(pieces))
            self.first_rows.append([start for start, _ in spans])
            for j, (start, rows) in enumerate(spans):
                pieces.append(PhysicalTable(f"{t.name}_{tag}{j or ''}", rows, t.dim, t.init_rows or t.num_embeddings))
                origins.append((i, start))
        if not pieces:
            raise ValueError(f"RowRangeLookup {tag}: every row range is empty")
        self.levels = max(len(starts) for starts in self.first_rows)
        # FBGEMM's features: a (piece, slot, level) for every slot whose table has a piece at that
        # level, in piece order, as FBGEMM needs them (it counts a feature's rows from the next one's)
        self.features = sorted(
            (first_piece[t] + j, s, j) for s, t in enumerate(slot_tables) for j in range(len(self.first_rows[t]))
        )
        piece_slots = [p for p, _, _ in self.features]
        if make_lookup is not None:
            self.batched = make_lookup(pieces, piece_slots, origins)
        else:
            self.batched = TableBatchedLookup(pieces, optimizer, seed=None, slot_tables=piece_slots, host_buffers=host_buffers)
        self.register_buffer("slot_lo", torch.tensor([lo[t] for t in slot_tables], dtype=torch.int64), persistent=False)
        self.register_buffer("slot_cap", torch.tensor([piece_rows(tables[t].dim) for t in slot_tables], dtype=torch.int64), persistent=False)
        self.register_buffer("slot_first_piece", torch.tensor([first_piece[t] for t in slot_tables], dtype=torch.int64), persistent=False)
        # FBGEMM's index of feature (level, slot); -1 where the slot's table has no piece there
        rank = torch.full((self.levels, self.num_slots), -1, dtype=torch.int64)
        for index, (_, s, j) in enumerate(self.features):
            rank[j, s] = index
        self.register_buffer("feature_rank", rank, persistent=False)
        slots = [s for _, s, _ in self.features]
        self.in_slot_order = self.levels == 1 and slots == sorted(slots)
        # the TBE output is already every slot's, in order: one level holding every slot
        self.whole = [(s, j) for _, s, j in self.features] == [(s, 0) for s in range(self.num_slots)]
        starts = torch.tensor([0] + self.slot_dims, dtype=torch.int64).cumsum(0)
        columns = [torch.arange(int(starts[s]), int(starts[s + 1])) for _, s, _ in self.features]
        # columns of each feature's pooled vector in the (B, Σ slot dims) output
        self.register_buffer("feature_columns", torch.cat(columns) if columns else torch.zeros(0, dtype=torch.int64), persistent=False)

    def pieces(self, table: int) -> list[tuple[int, torch.Tensor]]:
        """(first row, (rows, dim) weights) of each piece of ``table``, in row order."""
        return self._of_table(table, self.batched.tbe.split_embedding_weights())

    def state_pieces(self, table: int) -> list[tuple[int, torch.Tensor]]:
        """(first row, (rows,) row-wise Adagrad state) of each piece of ``table``; none with SGD."""
        states = self.batched.tbe.split_optimizer_states()
        return self._of_table(table, [s[0] for s in states]) if states else []

    def _of_table(self, table: int, per_piece: list[torch.Tensor]) -> list[tuple[int, torch.Tensor]]:
        first = sum(len(rows) for rows in self.first_rows[:table])
        return [(row, per_piece[first + j]) for j, row in enumerate(self.first_rows[table])]

    def locate(self, values: torch.Tensor, id_slot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each id's level (N,), FBGEMM table (N,) and row in that table (N,); meaningful for ids
        inside the slot's range."""
        relative = values - self.slot_lo[id_slot]  # (N,)
        cap = self.slot_cap[id_slot]  # (N,)
        level = torch.div(relative, cap, rounding_mode="floor")  # (N,)
        return level, self.slot_first_piece[id_slot] + level, relative - level * cap

    def forward(
        self,
        values: torch.Tensor,
        mine: torch.Tensor,
        id_slot: torch.Tensor,
        id_bag: torch.Tensor,
        bag_slot: torch.Tensor,
        per_slot: list[int],
        variable: bool,
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pooled vectors of the ids ``values`` (N,) where ``mine`` (N,) says they fall in this
        range, added into ``into`` (every slot's output: (B, Σ slot dims), or the flat
        variable-batch layout with ``variable``); a fresh output where ``into`` is None."""
        level, _, rows = self.locate(values, id_slot)
        bags = bag_slot.numel()
        if self.in_slot_order:  # ids in slot-major, bag-minor order already are in FBGEMM's feature order
            ids = rows[mine]
            per_bag = torch.zeros(bags, dtype=torch.int64).index_add_(0, id_bag, mine.to(torch.int64))  # (bags,)
            lengths = per_bag[self.feature_rank[0][bag_slot] >= 0]
        else:  # ids sorted by their feature (stable: bags keep their order within one)
            level, slot = level[mine], id_slot[mine]  # (M,)
            ids = rows[mine][torch.sort(self.feature_rank[level, slot], stable=True).indices]
            per_bag = torch.zeros(self.levels, bags, dtype=torch.int64).index_put_(
                (level, id_bag[mine]), torch.ones_like(level), accumulate=True
            )  # (levels, bags)
            first_bag = [sum(per_slot[:s]) for s in range(self.num_slots)]
            lengths = torch.cat([per_bag[j, first_bag[s] : first_bag[s] + per_slot[s]] for _, s, j in self.features])
        offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(lengths)
        if not variable:
            out = self.batched(ids, offsets)  # (B, Σ feature dims)
            if self.whole and into is None:
                return out
            if into is None:
                into = out.new_zeros(out.shape[0], sum(self.slot_dims))
            return into.index_add(1, self.feature_columns, out)  # (B, Σ slot dims)
        out = self.batched(ids, offsets, [per_slot[s] for _, s, _ in self.features])  # flat, feature by feature
        if self.whole and into is None:
            return out
        if into is None:
            into = out.new_zeros(sum(b * d for b, d in zip(per_slot, self.slot_dims)))
        return into.index_add(0, self._positions(per_slot), out)

    def _positions(self, per_slot: list[int]) -> torch.Tensor:
        """Where each feature's values sit in the variable-batch flat output, slot by slot."""
        sizes = [b * d for b, d in zip(per_slot, self.slot_dims)]
        starts = [sum(sizes[:s]) for s in range(len(sizes))]
        return torch.cat([torch.arange(starts[s], starts[s] + sizes[s]) for _, s, _ in self.features])
