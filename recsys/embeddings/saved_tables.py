"""The whole tables in a saved one-process lookup, whatever layout held them.

A one-process checkpoint is the state dict of the lookup that trained: a
:class:`~recsys.embeddings.tables.TableBatchedLookup` keeps every table in one FBGEMM flat
buffer, table after table; a :class:`~recsys.embeddings.placement.TieredLookup` keeps each
table's hot prefix in one FBGEMM lookup and its cold tail in another, each part cut into pieces
FBGEMM can address (:mod:`recsys.embeddings.row_ranges`). :func:`saved_tables` finds every table's
rows in either layout as :class:`TableRows`, views of the saved buffers in row order, so that a
lookup of another layout (``load_tables``), or a sharded run's shards, take the rows they need:
from a memory-mapped checkpoint, only their pages are read.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Optional

import torch

from recsys.embeddings.placement import hot_split
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.row_ranges import row_pieces
from recsys.embeddings.specs import TableOptimizerConfig
from recsys.embeddings.tables import PhysicalTable


@dataclasses.dataclass
class TableRows:
    """One table's rows (weights (rows, dim), or a row-wise state (rows,)) held in pieces.

    ``pieces``: (first row, rows of the piece), in row order, covering the table without gaps.
    Indexing with a row slice gives those rows: a view where one piece holds them, else a copy.
    """

    pieces: list[tuple[int, torch.Tensor]]

    def __len__(self) -> int:
        first, last = self.pieces[-1]
        return first + last.shape[0]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, stop, step = rows.indices(len(self))
        if step != 1:
            raise IndexError("TableRows takes a contiguous row slice")
        parts = [piece[max(start - first, 0) : stop - first] for first, piece in self.pieces
                 if first < stop and first + piece.shape[0] > start]
        if not parts:
            return self.pieces[0][1][:0]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def saved_tables(
    state: dict[str, torch.Tensor],
    prefix: str,
    tables: list[PhysicalTable],
    optimizer: TableOptimizerConfig,
    placement: Optional[PlacementConfig] = None,
) -> Optional[dict[str, dict[str, TableRows]]]:
    """Each table's ``weight`` and (row-wise Adagrad) ``momentum1`` as :class:`TableRows` over the
    saved state of a lookup over ``tables`` (its keys start with ``prefix``), for
    ``load_tables``. ``optimizer`` and ``placement`` are the saving run's: they decide how a
    tiered lookup split the tables (:func:`~recsys.embeddings.placement.hot_split`). None where
    ``state`` does not hold these tables in either layout (another plan or placement)."""
    rows = [t.num_embeddings for t in tables]
    if f"{prefix}tbe.weights_offsets" in state:  # one TableBatchedLookup: each table whole
        return _merge(tables, [_lookup_pieces(state, prefix, tables, [0] * len(tables), rows, cut=False)])
    hot = hot_split(tables, optimizer, placement) if placement is not None else None
    if hot is None or f"{prefix}hot.batched.tbe.weights_offsets" not in state:
        return None
    return _merge(tables, [_lookup_pieces(state, f"{prefix}hot.batched.", tables, [0] * len(tables), hot, cut=True),
                           _lookup_pieces(state, f"{prefix}cold.batched.", tables, hot, rows, cut=True)])


def _lookup_pieces(
    state: dict[str, torch.Tensor], prefix: str, tables: list[PhysicalTable], lo: list[int], hi: list[int], cut: bool
) -> Optional[list[dict[str, list]]]:
    """Per table, its pieces' (first row, view) of weights and states, in the saved flat buffers of
    one FBGEMM lookup holding rows ``[lo_t, hi_t)`` of each table (cut into pieces FBGEMM can
    address where ``cut``); None where the saved lookup is not that one."""
    def buffer(name: str) -> Optional[torch.Tensor]:  # the one placement's buffer that holds the tables
        held = [state[key] for key in (f"{prefix}tbe.{name}_{where}" for where in ("host", "dev", "uvm")) if key in state]
        held = [t for t in held if t.numel()]
        return held[0] if len(held) == 1 else None

    # (table, first row, rows) of every piece, in FBGEMM's order (table after table)
    pieces = [(t, start, n) for t, table in enumerate(tables)
              for start, n in (row_pieces(lo[t], hi[t], table.dim) if cut else [(lo[t], hi[t] - lo[t])] * (hi[t] > lo[t]))]
    weight_at = list(itertools.accumulate((n * tables[t].dim for t, _, n in pieces), initial=0))  # and the total
    row_at = list(itertools.accumulate((n for _, _, n in pieces), initial=0))
    # per lookup slot, FBGEMM's offset of its table in the buffer and the table's rows
    slot_rows, slot_starts = state.get(f"{prefix}tbe.rows_per_table"), state.get(f"{prefix}tbe.weights_offsets")
    weights, momentum = buffer("weights"), buffer("momentum1")
    if slot_rows is None or slot_starts is None or weights is None:
        return None
    if set(zip(slot_starts.tolist(), slot_rows.tolist())) != {(w, n) for w, (_, _, n) in zip(weight_at, pieces)}:
        return None
    if weights.numel() != weight_at[-1] or momentum is not None and momentum.numel() != row_at[-1]:
        return None
    out = [{"weight": [], "momentum1": []} for _ in tables]
    for (t, first, n), w, r in zip(pieces, weight_at, row_at):
        out[t]["weight"].append((first, weights[w : w + n * tables[t].dim].view(n, tables[t].dim)))
        if momentum is not None:
            out[t]["momentum1"].append((first, momentum[r : r + n]))
    return out


def _merge(tables: list[PhysicalTable], parts: list[Optional[list[dict[str, list]]]]) -> Optional[dict[str, dict[str, TableRows]]]:
    """One :class:`TableRows` per table and state from the pieces each lookup holds (hot, cold)."""
    if any(part is None for part in parts):
        return None
    out = {}
    for index, table in enumerate(tables):
        merged = {key: sorted((p for part in parts for p in part[index][key]), key=lambda p: p[0]) for key in ("weight", "momentum1")}
        out[table.name] = {key: TableRows(pieces) for key, pieces in merged.items() if pieces}
    return out
