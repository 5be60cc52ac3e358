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
pages of the batch's cold rows are read into the page cache together (:mod:`recsys.embeddings.disk_prefetch`);
:meth:`TieredLookup.prefetch` starts those reads for the next batch while the current step trains.

In a sharded run (``ranks``, each with its own ``ram_budget``) the two parts are torchrec
collections that DistributedModelParallel shards (:mod:`recsys.embeddings.sharding`): the hot
pieces as the run's sharding types allow, the cold pieces row-wise, each rank's cold shards in a
file of its own (``cold_weights.rank<r>.f32``) mapped the same way. Its reads are FBGEMM's page
faults on the rank that holds the rows, whose ids reach it inside torchrec's all-to-all; but
every rank reads the whole global batch, so each reads ahead, from the next global batch, the cold
rows it holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from recsys.core.units import format_bytes
from recsys.embeddings.disk_prefetch import ReadAhead, RowPrefetcher, advise_random_access
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
from recsys.embeddings.row_ranges import RowRangeLookup
from recsys.embeddings.sharding import SharedHostBuffers, ShardableLookup, sum_over_ranks
from recsys.embeddings.tables import INIT_WRITE_ROWS, PhysicalTable, checked_table_state, init_rows, optimizer_state_bytes

log = logging.getLogger(__name__)


def hot_rows(tables: list[PhysicalTable], budget: int, kind: TableOptimizer) -> list[int]:
    """Rows K_t of each table's hot prefix: every table cut at the same frequency rank K, the
    largest with Σ_t min(K, n_t) · weight_row_bytes_t + Σ_t state_t ≤ ``budget`` (K_t = min(K, n_t)).
    Ranks of different features are not comparable counts, so the rule treats equal ranks as
    equally hot. The optimizer state (row-wise Adagrad: 4 bytes a row) stays in RAM for every row,
    the cold ones included: at 1/dim of the weights it is small, and on disk it would double the
    pages a cold lookup reads (the backward reads and writes it too)."""
    sizes = [t.row_bytes for t in tables]
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
    return {t.name: (t.num_embeddings - k) * t.row_bytes for t, k in zip(tables, hot) if k < t.num_embeddings}


COLD_FILE = "cold_weights.f32"
# read-aheads kept for lookups to come: the next batch's, and slack for a caller that prefetches further
MAX_READ_AHEADS = 4


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
    path.touch()  # (from_file makes no file for 0 values: a rank whose cold shards are all empty)
    mapped = torch.from_file(str(path), shared=True, size=numel, dtype=torch.float32)
    advise_random_access(mapped)
    return mapped


class TieredLookup(nn.Module):
    """The one-call lookup of :class:`~recsys.embeddings.tables.TableBatchedLookup` over tables
    split into a hot prefix (RAM) and a cold tail (``cold_tier``: disk or RAM).

    Two FBGEMM calls serve all tables: one over the hot parts, one over the cold parts (each
    part cut into pieces FBGEMM can address, :class:`~recsys.embeddings.row_ranges.RowRangeLookup`). Initial
    weights equal the unsplit tables' (each part takes its rows of :func:`init_rows`), so a run
    with tiers trains like one without. ``hits`` / ``lookups`` count looked-up ids that found
    their row in the hot part. ``shardable`` (a sharded run): each part's pieces are a torchrec
    collection instead (:meth:`shardable_parts`), left unallocated until DistributedModelParallel
    shards them; :meth:`init_shards` then writes their rows.
    """

    def __init__(
        self,
        tables: list[PhysicalTable],
        hot: list[int],
        optimizer: TableOptimizerConfig,
        placement: PlacementConfig,
        seed: int = 0,
        slot_tables: list[int] | None = None,
        shardable: bool = False,
    ) -> None:
        super().__init__()
        self.tables = list(tables)
        self.optimizer_config = optimizer
        self.hot_counts = list(hot)
        self.shardable = shardable
        self.budget_bytes = placement.budget_bytes
        self._read_ahead = placement.read_ahead
        slot_tables = slot_tables if slot_tables is not None else list(range(len(tables)))
        self.num_slots = len(slot_tables)
        kind = TableOptimizer(optimizer.kind)
        sizes = [t.num_embeddings for t in tables]
        hot_lookup = self._collection(optimizer, seed, cold=False) if shardable else None
        self.hot = RowRangeLookup(tables, [0] * len(tables), hot, optimizer, slot_tables, "hot", make_lookup=hot_lookup)
        self.on_disk = placement.cold_tier == "disk"
        self.disk_dir: Optional[Path] = None
        buffers = None
        if self.on_disk:
            self.disk_dir = self._disk_dir(placement.disk_dir)
        if self.on_disk and not shardable:  # (a sharded run maps each rank's file once its shards are known)
            self._cold_weights_path = self.disk_dir / COLD_FILE
            self._cold_weights = _mapped(self._cold_weights_path, sum((n - k) * t.dim for t, n, k in zip(tables, sizes, hot)))
            buffers = {"weights": self._cold_weights}  # the optimizer state FBGEMM allocates, in RAM
        cold_lookup = self._collection(optimizer, seed, cold=True) if shardable else None
        self.cold = RowRangeLookup(tables, hot, sizes, optimizer, slot_tables, "cold", host_buffers=buffers, make_lookup=cold_lookup)
        self.reader = self._reader() if buffers is not None else None
        self._read_aheads: list[ReadAhead] = []  # started by prefetch(), oldest first
        self.read_ahead_batches = {"pipelined": 0, "synchronous": 0}  # cold reads of looked-up batches, by how
        self.read_wait_seconds = 0.0  # lookups' time waiting for cold pages (the part of the reads not overlapped)
        self.cold_pages_read = 0  # pages of the cold file read for looked-up batches (cached ones included)
        self.ram_bytes = sum(k * t.row_bytes + optimizer_state_bytes(t, kind) for t, k in zip(tables, hot))
        self.cold_bytes = sum(cold_bytes(tables, hot).values())
        # per slot: rows of its table's hot part (ids below it are hot)
        self.register_buffer("slot_hot_rows", torch.tensor([hot[t] for t in slot_tables], dtype=torch.int64), persistent=False)
        self.register_buffer("hits", torch.zeros((), dtype=torch.int64), persistent=False)
        self.register_buffer("lookups", torch.zeros((), dtype=torch.int64), persistent=False)
        if not shardable:  # a sharded run writes each shard's rows where sharding puts it
            self.reset_parameters(seed)

    def _collection(self, optimizer: TableOptimizerConfig, seed: int, cold: bool) -> Callable:
        """Builds a sharded run's torchrec collection over one part's pieces (see
        :class:`~recsys.embeddings.row_ranges.RowRangeLookup`'s ``make_lookup``): each piece
        starts with its rows of the whole table's initial weights."""

        def make(pieces: list[PhysicalTable], piece_slots: list[int], origins: list[tuple[int, int]]) -> ShardableLookup:
            whole = [(self.tables[index], index, first) for index, first in origins]
            return ShardableLookup(pieces, optimizer, piece_slots, seed=seed, origins=whole, cold=cold)

        return make

    def hot_bytes_per_rank(self, ranks: int) -> int:
        """A sharded run's RAM for each rank's hot shards: its ``ram_budget`` less its share of
        the cold rows' optimizer state (kept in RAM; row-wise shards spread it evenly)."""
        kind = TableOptimizer(self.optimizer_config.kind)
        cold_state = sum(optimizer_state_bytes(t, kind) * (t.num_embeddings - k) // t.num_embeddings
                         for t, k in zip(self.tables, self.hot_counts))
        return self.budget_bytes - cold_state // ranks

    def shardable_parts(self) -> list[tuple[str, ShardableLookup]]:
        """A sharded run's torchrec collections, by their path under this module."""
        return [("hot.batched", self.hot.batched), ("cold.batched", self.cold.batched)]

    def cold_file(self, values: int, rank: int) -> SharedHostBuffers:
        """A sharded run's cold file for ``rank``: ``values`` float32 values (its cold shards'),
        memory-mapped, as the FBGEMM host buffer of the rank's cold collection."""
        self._cold_weights_path = self.disk_dir / f"{Path(COLD_FILE).stem}.rank{rank}.f32"
        self._cold_weights = _mapped(self._cold_weights_path, values)
        return SharedHostBuffers(weights=self._cold_weights)

    def _reader(self) -> RowPrefetcher:
        """Reads ahead the pages of the cold rows a batch looks up in the weights file."""
        views = self.cold.batched.tbe.split_embedding_weights()
        return RowPrefetcher(self._cold_weights_path, [self._file_offset(v) for v in views], [v.shape[1] * v.element_size() for v in views])

    def _file_offset(self, view: torch.Tensor) -> int:
        """Bytes into the cold file of the first value of ``view`` (a view of the mapped weights)."""
        return view.data_ptr() - self._cold_weights.data_ptr()

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
        """Each part takes its rows of :func:`init_rows`."""
        self._write_weights(lambda index, table, start, stop: init_rows(table, index, seed, start, stop))

    @torch.no_grad()
    def load_tables(self, states: dict, optimizer_state: bool = True) -> None:
        """Copy whole tables in, by name, as :meth:`TableBatchedLookup.load_tables
        <recsys.embeddings.tables.TableBatchedLookup.load_tables>` does: each part takes its rows
        (a sharded checkpoint's tables, or an untiered run's, resume with tiers)."""
        kind = TableOptimizer(self.optimizer_config.kind)
        saved = [checked_table_state(states, table, kind, optimizer_state) for table in self.tables]
        self._write_weights(lambda index, table, start, stop: saved[index][0][start:stop])
        for index, (_, momentum) in enumerate(saved):
            if momentum is not None:
                for first, state in self.hot.state_pieces(index) + self.cold.state_pieces(index):
                    state.copy_(momentum[first : first + state.shape[0]])

    def _write_weights(self, rows: Callable[[int, PhysicalTable, int, int], torch.Tensor]) -> None:
        """Set every part's weights to ``rows(table index, table, start, stop)`` of its whole
        table, in blocks (the cold file's with :meth:`_file_writes`)."""
        with self._file_writes() as write_cold:
            for index, table in enumerate(self.tables):
                parts = [(first, weight, None) for first, weight in self.hot.pieces(index)]
                parts += [(first, weight, write_cold) for first, weight in self.cold.pieces(index)]
                for first, weight, write in parts:
                    for start in range(0, weight.shape[0], INIT_WRITE_ROWS):
                        stop = min(start + INIT_WRITE_ROWS, weight.shape[0])
                        values = rows(index, table, first + start, first + stop)
                        if write is None:
                            weight[start:stop] = values
                        else:
                            write(weight[start:stop], values)

    @contextlib.contextmanager
    def _file_writes(self) -> Iterator[Optional[Callable[[torch.Tensor, torch.Tensor], None]]]:
        """``write(view, values)`` for views of the cold weights (None without a disk tier): file
        writes, not stores through the mapping, so the pages go through the page cache without
        becoming this process's resident memory (a table larger than RAM initialises with a small
        RSS). At the end the file is synced, so that the first training steps do not wait on the
        writeback of the written values."""
        if not self.on_disk:
            yield None
            return
        with open(self._cold_weights_path, "r+b", buffering=0) as file:

            def write(view: torch.Tensor, values: torch.Tensor) -> None:
                os.pwrite(file.fileno(), values.contiguous().numpy(), self._file_offset(view))  # (the array's buffer, not a copy)

            yield write
            os.fsync(file.fileno())
            # and out of the page cache: these pages are no hotter than any other, and with the
            # cache full every read of a training step first waits for reclaim (random 4 KB reads
            # of the 38 GB benchmark file: 1.5K pages/s from 32 threads before, 4.1K after)
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def init_shards(self) -> None:
        """A sharded run's initial rows, once DistributedModelParallel has placed the shards:
        each part's are its rows of the whole tables' (:meth:`ShardableLookup.init_shards
        <recsys.embeddings.sharding.ShardableLookup.init_shards>`), the cold file's written
        with file writes."""
        self.hot.batched.init_shards()
        with self._file_writes() as write_cold:
            self.cold.batched.init_shards(write_cold)
        if self.on_disk:
            self._read_own_shards()

    def _read_own_shards(self) -> None:
        """A sharded disk tier's read-ahead: of the rows of each cold piece this rank holds (its
        row-wise shard of it: ``shard_rows`` [first, end) per piece), in its own file."""
        state = self.cold.batched.ebc.state_dict()
        starts, widths, bounds = [], [], []
        for piece in self.cold.batched.tables:
            shards = [s for s in state[f"embedding_bags.{piece.name}.weight"].local_shards() if s.metadata.shard_sizes[0]]
            first, rows = (shards[0].metadata.shard_offsets[0], shards[0].metadata.shard_sizes[0]) if shards else (0, 0)
            starts.append(self._file_offset(shards[0].tensor) if shards else 0)
            widths.append(piece.row_bytes)
            bounds.append((first, first + rows))
        self.reader = RowPrefetcher(self._cold_weights_path, starts, widths)
        self.register_buffer("shard_rows", torch.tensor(bounds, dtype=torch.int64).T.contiguous(), persistent=False)

    def table_weights(self) -> dict[str, torch.Tensor]:
        """Each whole table's (num_embeddings, dim) weights by name: a view where the table is
        one piece in RAM, else a copy of its pieces' rows (writes to it do not reach the table)."""
        out = {}
        for index, table in enumerate(self.tables):
            pieces = [weight for _, weight in self.hot.pieces(index) + self.cold.pieces(index)]
            out[table.name] = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        return out

    @property
    def output_dims(self) -> list[int]:
        return [t.dim for t in self.tables]

    def get_learning_rate(self) -> float:
        return self.hot.batched.get_learning_rate()

    def set_learning_rate(self, lr: float) -> None:
        self.hot.batched.set_learning_rate(lr)
        self.cold.batched.set_learning_rate(lr)

    def tiers(self) -> dict:
        """Bytes per tier (of all ranks, in a sharded run) and the hot tier's hit rate so far,
        for logs and reports. A sharded run's ranks must all call it (it sums their counts)."""
        counts = {"hits": int(self.hits), "lookups": int(self.lookups)}
        if self.shardable:
            counts = sum_over_ranks(counts, device="cpu")
        reads = self.reader is not None  # the read-ahead of the cold file (this rank's, sharded)
        return {
            "ram_bytes": self.ram_bytes,
            "disk_bytes": self.cold_bytes if self.on_disk else 0,
            "cold_ram_bytes": 0 if self.on_disk else self.cold_bytes,
            "hot_rows": {t.name: k for t, k in zip(self.tables, self.hot_counts)},
            "hit_rate": counts["hits"] / max(counts["lookups"], 1),
            "disk_dir": str(self.disk_dir) if self.disk_dir else None,
            "read_ahead_batches": dict(self.read_ahead_batches) if reads else None,
            "read_wait_seconds": self.read_wait_seconds if reads else None,
            "cold_pages_read": self.cold_pages_read if reads else None,
        }

    def _route(self, values: torch.Tensor, offsets: torch.Tensor, per_slot: list[int]):
        """Each bag's slot (bags,), each id's bag (N,) and slot (N,), and which ids are hot (N,):
        those below their table's hot row count."""
        lengths = (offsets[1:] - offsets[:-1]).long()  # (bags,) int64, as the ids
        bag_slot = torch.repeat_interleave(torch.arange(self.num_slots), torch.tensor(per_slot))  # (bags,)
        id_bag = torch.repeat_interleave(torch.arange(lengths.numel()), lengths, output_size=values.numel())  # (N,)
        id_slot = bag_slot[id_bag]  # (N,)
        return bag_slot, id_bag, id_slot, values < self.slot_hot_rows[id_slot]

    def _per_slot(self, offsets: torch.Tensor, bags_per_slot: list[int] | None) -> list[int]:
        return bags_per_slot if bags_per_slot is not None else [(offsets.numel() - 1) // self.num_slots] * self.num_slots

    def _cold_rows(self, values: torch.Tensor, id_slot: torch.Tensor, cold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The FBGEMM table (M,) and row in it (M,) of each cold id (M of them), in the cold file;
        in a sharded run, of those in this rank's shards (its table per piece, its row in it)."""
        _, table, row = self.cold.locate(values[cold], id_slot[cold])
        if not self.shardable:
            return table, row
        first, end = self.shard_rows[0][table], self.shard_rows[1][table]  # (M,)
        mine = (row >= first) & (row < end)
        return table[mine], (row - first)[mine]

    def prefetch(self, values: torch.Tensor, offsets: torch.Tensor, bags_per_slot: list[int] | None = None) -> None:
        """Start reading from disk, in the background, the cold rows a later forward of these
        ids (the forward's arguments) will look up: called with the next batch while the current
        one trains, its reads overlap the step. In a sharded run, called with the next global
        batch: the rows any rank looks up that this rank holds. A no-op without a disk tier."""
        if not self.reads_ahead:
            return
        _, _, id_slot, hot = self._route(values, offsets, self._per_slot(offsets, bags_per_slot))
        self._read_aheads.append(self.reader.start(*self._cold_rows(values, id_slot, ~hot)))
        del self._read_aheads[:-MAX_READ_AHEADS]  # batches prefetched but never looked up

    @property
    def read_ahead(self) -> bool:
        """``placement.read_ahead``; turned off, the reads already started are waited for and dropped."""
        return self._read_ahead

    @read_ahead.setter
    def read_ahead(self, on: bool) -> None:
        if not on:
            for ahead in self._read_aheads:
                ahead.wait()
            self._read_aheads.clear()
        self._read_ahead = on

    @property
    def reads_ahead(self) -> bool:
        """Whether lookups read their cold pages ahead (a disk tier with ``placement.read_ahead``)."""
        return self.reader is not None and self._read_ahead

    def _read_cold_rows(self, tables: torch.Tensor | None, rows: torch.Tensor | None) -> None:
        """Have the pages of ``rows`` (M,) of cold FBGEMM ``tables`` (M,) cached before the
        lookup: wait for the read-ahead :meth:`prefetch` started for them, else read them now.
        A sharded run (None: the rows this rank holds come from every rank's slice) waits for the
        oldest read-ahead, the next global batch's, else leaves its rows to FBGEMM's page faults."""
        start = time.perf_counter()
        for index, ahead in enumerate(self._read_aheads):
            if tables is None or ahead.covers(tables, rows):
                del self._read_aheads[: index + 1]  # those before it were for batches never looked up
                self.cold_pages_read += ahead.wait()
                self.read_ahead_batches["pipelined"] += 1
                break
        else:
            self.cold_pages_read += self.reader(tables, rows) if tables is not None else 0
            self.read_ahead_batches["synchronous"] += 1
        self.read_wait_seconds += time.perf_counter() - start

    def forward(self, values: torch.Tensor, offsets: torch.Tensor, bags_per_slot: list[int] | None = None) -> torch.Tensor:
        per_slot = self._per_slot(offsets, bags_per_slot)
        bag_slot, id_bag, id_slot, hot = self._route(values, offsets, per_slot)
        cold = ~hot
        if self.reads_ahead:
            self._read_cold_rows(*((None, None) if self.shardable else self._cold_rows(values, id_slot, cold)))
        with torch.no_grad():
            self.hits += hot.sum()
            self.lookups += values.numel()
        variable = bags_per_slot is not None
        out = self.hot(values, hot, id_slot, id_bag, bag_slot, per_slot, variable)  # like the unsplit lookup's
        return self.cold(values, cold, id_slot, id_bag, bag_slot, per_slot, variable, into=out)


def hot_split(tables: list[PhysicalTable], optimizer: TableOptimizerConfig, placement: PlacementConfig,
              ranks: int = 1) -> Optional[list[int]]:
    """The hot rows of each table where ``placement.ram_budget`` (each rank's, of ``ranks``)
    splits the tables (:func:`hot_rows`); None where there is no budget or every table fits it.
    With several ranks a cold tail of fewer than ``ranks``² rows stays hot (a few rows over the
    budget): torchrec's row-wise shards (ceil(rows / ranks) a rank) then give every rank rows of
    every cold piece, and FBGEMM takes a rank whose shards are all empty for a GPU lookup."""
    budget = placement.budget_bytes
    if budget is None:
        return None
    hot = hot_rows(tables, budget * ranks, TableOptimizer(optimizer.kind))
    if ranks > 1:
        hot = [t.num_embeddings if t.num_embeddings - k < ranks * ranks else k for t, k in zip(tables, hot)]
    if all(k == t.num_embeddings for t, k in zip(tables, hot)):
        log.info("placement: all tables fit placement.ram_budget=%s in RAM", format_bytes(budget))
        return None
    return hot


def tiered_lookup(
    tables: list[PhysicalTable],
    optimizer: TableOptimizerConfig,
    placement: PlacementConfig,
    device: torch.device,
    seed: int,
    slot_tables: list[int],
    ranks: int | None = None,
) -> Optional[TieredLookup]:
    """The tiered lookup ``placement`` asks for, or None where every table fits the RAM budget.
    ``ranks``: a sharded run's world size (its parts then are torchrec collections that
    DistributedModelParallel shards, and the RAM budget is each rank's); None for one process."""
    placement.check_device(device.type)
    hot = hot_split(tables, optimizer, placement, ranks or 1)
    if hot is None:
        return None
    if placement.cold_tier == "disk":
        check_disk_space(cold_bytes(tables, hot), disk_dir_of(placement))
    lookup = TieredLookup(tables, hot, optimizer, placement, seed=seed, slot_tables=slot_tables, shardable=ranks is not None)
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
