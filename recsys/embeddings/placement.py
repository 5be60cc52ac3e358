"""Tiered placement: a hot prefix of every physical table in RAM, its cold tail on disk.

Vocabularies are frequency-ranked, so row r of a full table is the r-th most frequent id
(the prefix split of mixed-dimension blocks, Ginart et al., 2021, relies on the same fact).
:func:`hot_rows` cuts every table at one frequency rank K, the largest whose weights, with the
optimizer state of every row, fit ``placement.ram_budget``; rows ``[0, K)`` form a hot table and
rows ``[K, n)`` a cold table of the same dim. :class:`TieredLookup` routes each looked-up id to
its part and adds the two pooled vectors (sum pooling commutes with the split), so every
method's tables get tiers alike, behind the same interface as
:class:`~recsys.embeddings.tables.TableBatchedLookup`.

The cold tables' weights are a memory-mapped file (``torch.from_file(shared=True)``) handed to
FBGEMM's CPU table-batched lookup as its host buffer: no table is ever allocated in RAM whole,
the fused optimizer writes through to the file, and the OS page cache is the RAM tier in front
of the disk. Their row-wise Adagrad state (4 bytes a row) stays in RAM. Before each lookup the
pages of the batch's cold rows are read ahead together (:mod:`recsys.embeddings.disk_prefetch`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from recsys.core.units import format_bytes
from recsys.embeddings.disk_prefetch import RowPrefetcher, advise_random_access
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
from recsys.embeddings.tables import (
    INIT_BLOCK_ROWS,
    PhysicalTable,
    TableBatchedLookup,
    init_rows,
    optimizer_state_bytes,
)

log = logging.getLogger(__name__)


def hot_rows(tables: list[PhysicalTable], budget: int, kind: TableOptimizer) -> list[int]:
    """Rows K_t of each table's hot prefix: every table cut at the same frequency rank K, the
    largest with Σ_t min(K, n_t) · weight_row_bytes_t + Σ_t state_t ≤ ``budget`` (K_t = min(K, n_t)).
    Ranks of different features are not comparable counts, so the rule treats equal ranks as
    equally hot. The optimizer state (row-wise Adagrad: 4 bytes a row) stays in RAM for every row,
    the cold ones included: at 1/dim of the weights it is small, and on disk it would double the
    pages a cold lookup reads (the backward reads and writes it too)."""
    sizes = [t.dim * 4 for t in tables]
    state = sum(optimizer_state_bytes(t, kind) for t in tables)

    def cost(rank: int) -> int:
        return state + sum(min(rank, t.num_embeddings) * size for t, size in zip(tables, sizes))

    longest = max(t.num_embeddings for t in tables)
    if cost(longest) <= budget:
        return [t.num_embeddings for t in tables]
    if cost(1) > budget:
        raise ValueError(
            f"placement.ram_budget={format_bytes(budget)} is below the optimizer state of every row ({format_bytes(state)}, "
            f"kept in RAM) plus one hot row per table: {len(tables)} tables need {format_bytes(cost(1))}"
        )
    fits, over = 1, longest  # cost(fits) <= budget < cost(over)
    while over - fits > 1:
        mid = (fits + over) // 2
        fits, over = (mid, over) if cost(mid) <= budget else (fits, mid)
    return [min(fits, t.num_embeddings) for t in tables]


def cold_bytes(tables: list[PhysicalTable], hot: list[int]) -> dict[str, int]:
    """Bytes of each cold tail's weights (its optimizer state stays in RAM), by table name;
    tables with no cold rows are left out."""
    return {t.name: (t.num_embeddings - k) * t.dim * 4 for t, k in zip(tables, hot) if k < t.num_embeddings}


COLD_FILE = "cold_weights.f32"


def check_disk_space(cold: dict[str, int], directory: Path) -> None:
    """Refuse cold tails that do not fit the free space of ``directory`` (made or not yet), naming
    the tables, their bytes, the free bytes and the directory. Cold files already there (an
    earlier run's, replaced when the tables are made) count as free."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if (directory / COLD_FILE).exists():
        free += os.stat(directory / COLD_FILE).st_blocks * 512
    need = sum(cold.values())
    if need <= free:
        return
    largest = sorted(cold.items(), key=lambda kv: -kv[1])
    listed = ", ".join(f"{name} {format_bytes(b)}" for name, b in largest[:10])
    more = f" and {len(largest) - 10} more" if len(largest) > 10 else ""
    raise ValueError(
        f"placement: the cold tables need {format_bytes(need)} ({need:,} bytes of weights) "
        f"on disk, but {directory} has {format_bytes(free)} ({free:,} bytes) free; tables: {listed}{more}. "
        "Set placement.disk_dir to a larger disk, or raise placement.ram_budget"
    )


def disk_dir_of(placement: PlacementConfig) -> Path:
    """Where the cold files go: ``placement.disk_dir``, else the system's temporary folder
    (a fresh folder inside it, made with the model)."""
    return Path(placement.disk_dir) if placement.disk_dir is not None else Path(tempfile.gettempdir())


def _mapped(path: Path, numel: int) -> torch.Tensor:
    """A fresh zero-filled float32 file of ``numel`` values, memory-mapped (no RAM allocated) for
    random access."""
    path.unlink(missing_ok=True)
    mapped = torch.from_file(str(path), shared=True, size=numel, dtype=torch.float32)
    advise_random_access(mapped)
    return mapped


class TieredLookup(nn.Module):
    """The one-call lookup of :class:`~recsys.embeddings.tables.TableBatchedLookup` over tables
    split into a hot prefix (RAM) and a cold tail (``cold_tier``: disk or RAM).

    Two FBGEMM calls serve all tables: one over the hot parts, one over the cold parts. Initial
    weights equal the unsplit tables' (each part takes its rows of :func:`init_rows`), so a run
    with tiers trains like one without. ``hits`` / ``lookups`` count looked-up ids that found
    their row in the hot part.
    """

    def __init__(
        self,
        tables: list[PhysicalTable],
        hot: list[int],
        optimizer: TableOptimizerConfig,
        placement: PlacementConfig,
        seed: int = 0,
        slot_tables: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.tables = list(tables)
        self.optimizer_config = optimizer
        self.hot_counts = list(hot)
        slot_tables = slot_tables if slot_tables is not None else list(range(len(tables)))
        self.num_slots = len(slot_tables)
        cold = [i for i, t in enumerate(tables) if hot[i] < t.num_embeddings]
        cold_index = {t: j for j, t in enumerate(cold)}
        self.cold_slots = [s for s, t in enumerate(slot_tables) if t in cold_index]
        kind = TableOptimizer(optimizer.kind)
        hot_parts = [PhysicalTable(f"{t.name}_hot", k, t.dim, t.init_rows or t.num_embeddings) for t, k in zip(tables, hot)]
        cold_parts = [
            PhysicalTable(f"{tables[i].name}_cold", tables[i].num_embeddings - hot[i], tables[i].dim, tables[i].init_rows or tables[i].num_embeddings)
            for i in cold
        ]
        self.hot = TableBatchedLookup(hot_parts, optimizer, seed=None, slot_tables=slot_tables)
        self.on_disk = placement.cold_tier == "disk"
        self.disk_dir: Optional[Path] = None
        buffers = None
        if self.on_disk:
            self.disk_dir = self._disk_dir(placement.disk_dir)
            self._cold_weights = _mapped(self.disk_dir / COLD_FILE, sum(t.num_embeddings * t.dim for t in cold_parts))
            buffers = {"weights": self._cold_weights}  # the optimizer state FBGEMM allocates, in RAM
        self.cold = TableBatchedLookup(
            cold_parts, optimizer, seed=None, slot_tables=[cold_index[slot_tables[s]] for s in self.cold_slots], host_buffers=buffers
        )
        self.prefetch = self._prefetcher(buffers["weights"]) if self.on_disk else None
        # per slot: its table's index among the cold parts (-1: the table has no cold part)
        self.register_buffer("slot_cold_table", torch.tensor([cold_index.get(t, -1) for t in slot_tables]), persistent=False)
        self.ram_bytes = sum(k * t.dim * 4 + optimizer_state_bytes(t, kind) for t, k in zip(tables, hot))
        self.cold_bytes = sum(cold_bytes(tables, hot).values())
        # per slot: rows of its table's hot part (ids below it are hot)
        self.register_buffer("slot_hot_rows", torch.tensor([hot[t] for t in slot_tables], dtype=torch.int64), persistent=False)
        dims = [tables[t].dim for t in slot_tables]
        starts = torch.tensor([0] + dims, dtype=torch.int64).cumsum(0)
        self.slot_dims = dims
        # columns of the cold slots in the (B, Σ slot dims) output
        cold_columns = [torch.arange(int(starts[s]), int(starts[s + 1])) for s in self.cold_slots]
        self.register_buffer("cold_columns", torch.cat(cold_columns), persistent=False)
        self.register_buffer("hits", torch.zeros((), dtype=torch.int64), persistent=False)
        self.register_buffer("lookups", torch.zeros((), dtype=torch.int64), persistent=False)
        self.reset_parameters(seed)

    def _prefetcher(self, weights: torch.Tensor) -> RowPrefetcher:
        """Reads ahead the pages of the cold rows a batch looks up in the weights file."""
        views = self.cold.tbe.split_embedding_weights()
        starts = [view.data_ptr() - weights.data_ptr() for view in views]  # bytes into the file
        return RowPrefetcher(self.disk_dir / COLD_FILE, starts, [view.shape[1] * view.element_size() for view in views])

    def _disk_dir(self, configured: Optional[str]) -> Path:
        if configured is not None:
            path = Path(configured)
            path.mkdir(parents=True, exist_ok=True)
            return path
        path = Path(tempfile.mkdtemp(prefix="recsys-tables-"))  # in disk_dir_of's folder
        weakref.finalize(self, shutil.rmtree, path, True)  # a folder we made goes with the model
        return path

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Each part takes its rows of :func:`init_rows`. The cold file is written with file writes,
        not through its mapping: the pages go through the page cache without becoming this
        process's resident memory (a table larger than RAM initialises with a small RSS), and
        synced, so that the first training steps do not wait on the writeback of the initial
        values."""
        hot = self.hot.tbe.split_embedding_weights()
        cold = iter(self.cold.tbe.split_embedding_weights())
        file = open(self.disk_dir / COLD_FILE, "r+b", buffering=0) if self.on_disk else None  # noqa: SIM115
        try:
            for index, (table, k) in enumerate(zip(self.tables, self.hot_counts)):
                parts = [(hot[index], 0, None)] + ([(next(cold), k, file)] if k < table.num_embeddings else [])
                for weight, first, target in parts:
                    for start in range(0, weight.shape[0], 16 * INIT_BLOCK_ROWS):
                        stop = min(start + 16 * INIT_BLOCK_ROWS, weight.shape[0])
                        values = init_rows(table, index, seed, first + start, first + stop)
                        if target is None:
                            weight[start:stop] = values
                        else:  # byte offset of these rows in the file the cold weights map
                            offset = weight[start].data_ptr() - self._cold_weights.data_ptr()
                            os.pwrite(target.fileno(), values.numpy().tobytes(), offset)
            if file is not None:  # written to disk now: training then starts with no backlog of dirty pages
                os.fsync(file.fileno())
        finally:
            if file is not None:
                file.close()

    def table_weights(self) -> dict[str, torch.Tensor]:
        """Each whole table's (num_embeddings, dim) weights by name: a view where the table has
        no cold part, else a copy of its hot and cold rows (writes to it do not reach the table)."""
        hot = self.hot.tbe.split_embedding_weights()
        cold = iter(self.cold.tbe.split_embedding_weights())
        return {
            t.name: hot[i] if k == t.num_embeddings else torch.cat([hot[i], next(cold)])
            for i, (t, k) in enumerate(zip(self.tables, self.hot_counts))
        }

    @property
    def output_dims(self) -> list[int]:
        return [t.dim for t in self.tables]

    def get_learning_rate(self) -> float:
        return self.hot.get_learning_rate()

    def set_learning_rate(self, lr: float) -> None:
        self.hot.set_learning_rate(lr)
        self.cold.set_learning_rate(lr)

    @property
    def hit_rate(self) -> float:
        return float(self.hits) / max(int(self.lookups), 1)

    def tiers(self) -> dict:
        """Bytes per tier and the hot tier's hit rate so far, for logs and reports."""
        return {
            "ram_bytes": self.ram_bytes,
            "disk_bytes": self.cold_bytes if self.on_disk else 0,
            "cold_ram_bytes": 0 if self.on_disk else self.cold_bytes,
            "hot_rows": {t.name: k for t, k in zip(self.tables, self.hot_counts)},
            "hit_rate": self.hit_rate,
            "disk_dir": str(self.disk_dir) if self.disk_dir else None,
        }

    def forward(self, values: torch.Tensor, offsets: torch.Tensor, bags_per_slot: list[int] | None = None) -> torch.Tensor:
        lengths = (offsets[1:] - offsets[:-1]).long()  # (bags,) int64, as the ids
        per_slot = bags_per_slot if bags_per_slot is not None else [lengths.numel() // self.num_slots] * self.num_slots
        bag_slot = torch.repeat_interleave(torch.arange(self.num_slots), torch.tensor(per_slot))  # (bags,)
        id_bag = torch.repeat_interleave(torch.arange(lengths.numel()), lengths, output_size=values.numel())  # (N,)
        id_slot = bag_slot[id_bag]  # (N,)
        limit = self.slot_hot_rows[id_slot]  # (N,) first cold row of each id's table
        hot = values < limit  # (N,)
        cold = ~hot
        cold_values = (values - limit)[cold]
        if self.prefetch is not None:
            self.prefetch(self.slot_cold_table[id_slot][cold], cold_values)
        with torch.no_grad():
            self.hits += hot.sum()
            self.lookups += values.numel()
        hot_lengths = torch.zeros_like(lengths).index_add_(0, id_bag, hot.to(lengths.dtype))  # (bags,)
        hot_offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(hot_lengths)
        out = self.hot(values[hot], hot_offsets, bags_per_slot)  # like the unsplit lookup's
        cold_bags = torch.isin(bag_slot, torch.tensor(self.cold_slots))  # (bags,)
        cold_offsets = torch.ops.fbgemm.asynchronous_complete_cumsum((lengths - hot_lengths)[cold_bags])
        if bags_per_slot is None:
            cold_out = self.cold(cold_values, cold_offsets)  # (B, Σ cold slot dims)
            return out.index_add(1, self.cold_columns, cold_out)  # (B, Σ slot dims)
        cold_out = self.cold(cold_values, cold_offsets, [per_slot[s] for s in self.cold_slots])
        return out.index_add(0, self._cold_positions(per_slot), cold_out)  # flat, slot by slot

    def _cold_positions(self, per_slot: list[int]) -> torch.Tensor:
        """Where each cold slot's values sit in the variable-batch flat output."""
        sizes = [b * d for b, d in zip(per_slot, self.slot_dims)]
        starts = [sum(sizes[:s]) for s in range(len(sizes))]
        return torch.cat([torch.arange(starts[s], starts[s] + sizes[s]) for s in self.cold_slots])


def tiered_lookup(
    tables: list[PhysicalTable],
    optimizer: TableOptimizerConfig,
    placement: PlacementConfig,
    device: torch.device,
    seed: int,
    slot_tables: list[int],
) -> Optional[TieredLookup]:
    """The tiered lookup ``placement`` asks for, or None where every table fits the RAM budget."""
    placement.check_device(device.type)
    budget = placement.budget_bytes
    if budget is None:
        return None
    kind = TableOptimizer(optimizer.kind)
    hot = hot_rows(tables, budget, kind)
    if all(k == t.num_embeddings for t, k in zip(tables, hot)):
        log.info("placement: all tables fit placement.ram_budget=%s in RAM", format_bytes(budget))
        return None
    if placement.cold_tier == "disk":
        check_disk_space(cold_bytes(tables, hot), disk_dir_of(placement))
    lookup = TieredLookup(tables, hot, optimizer, placement, seed=seed, slot_tables=slot_tables)
    tiers = lookup.tiers()
    log.info(
        "placement: hot rows %s in RAM (%s), cold rows on %s (%s)%s",
        tiers["hot_rows"],
        format_bytes(tiers["ram_bytes"]),
        placement.cold_tier,
        format_bytes(lookup.cold_bytes),
        f" at {lookup.disk_dir}" if lookup.disk_dir else "",
    )
    return lookup
