"""Plain physical tables and the one table-batched lookup that serves all of them.

Every embedding method compiles to :class:`PhysicalTable` rows; :class:`TableBatchedLookup`
looks up all of a model's physical tables in ONE FBGEMM table-batched call
(``SplitTableBatchedEmbeddingBagsCodegen``), with the table optimizer fused into the backward:
the rows touched by a batch are updated in place while the gradient is computed, and no dense
gradient of the table ever exists. Methods own their id transform and combiner, never the
kernel, so the fused lookup, sharding and export serve them all alike.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from fbgemm_gpu.split_table_batched_embeddings_ops_common import (
    BoundsCheckMode,
    CacheAlgorithm,
    EmbeddingLocation,
    PoolingMode,
)
from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
    ComputeDevice,
    SplitTableBatchedEmbeddingBagsCodegen,
)
from torch import nn

from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.specs import FBGEMM_DIM_MULTIPLE, TableOptimizer, TableOptimizerConfig

# FBGEMM's CPU backward with the fused row-wise Adagrad (fbgemm-gpu 1.8) addresses a row within its
# table by a 32-bit byte offset: past 4 GiB of one table's weights, updates land on the wrong rows
# (tests/embeddings/test_row_ranges.py); recsys.embeddings.row_ranges cuts tables into pieces under it
FBGEMM_CPU_MAX_TABLE_BYTES = 1 << 32

# rows of one initialisation block: each block has its own seeded generator, so any row range of a
# table (a shard on another rank, a slice of a memory-mapped file) gets the same initial values
# without drawing the rows before it
INIT_BLOCK_ROWS = 1 << 16
INIT_WRITE_ROWS = 4 * INIT_BLOCK_ROWS  # rows of a table initialised (computed, then written) at a time: 64 MB at dim 64


@dataclasses.dataclass(frozen=True)
class PhysicalTable:
    """One plain table: ``num_embeddings`` rows of ``dim`` float32 values.

    ``init_rows`` sets the initial weights' range, uniform in ±1/sqrt(init_rows) (DLRM's rule
    with the table's own rows by default). A table that holds part of a logical feature
    (a mixed-dimension block) uses the feature's rows, so splitting a table changes no
    initial vector's scale.

    Checked against the literature: the DLRM reference (Naumov et al., 2019,
    ``dlrm_s_pytorch.create_emb``) draws U(-sqrt(1/n), sqrt(1/n)), and torchrec's
    ``EmbeddingBagConfig`` defaults to the same bound; we keep it, so results compare with
    both. With row-wise Adagrad the first update of a row moves each element by about the
    learning rate (0.05), far above the bound of a 10M-row table (3e-4): the init matters for
    the small tables, whose rows start large (±0.58 for 3 ids) and are shared by many samples.
    """

    name: str
    num_embeddings: int
    dim: int
    init_rows: Optional[int] = None

    def __post_init__(self) -> None:
        if self.num_embeddings <= 0:
            raise ValueError(f"table {self.name}: num_embeddings must be positive, got {self.num_embeddings}")
        if self.dim <= 0 or self.dim % FBGEMM_DIM_MULTIPLE:
            raise ValueError(
                f"table {self.name}: dim {self.dim} is not a positive multiple of {FBGEMM_DIM_MULTIPLE} "
                "(FBGEMM's table-batched kernels need it)"
            )

    @property
    def row_bytes(self) -> int:
        """Bytes of one row's weights (float32)."""
        return self.dim * 4

    @property
    def weight_bytes(self) -> int:
        return self.num_embeddings * self.row_bytes


def optimizer_state_bytes(table: PhysicalTable, kind: TableOptimizer) -> int:
    """Bytes of optimizer state the fused optimizer keeps for ``table``."""
    return table.num_embeddings * 4 if kind is TableOptimizer.rowwise_adagrad else 0


def init_rows(table: PhysicalTable, index: int, seed: int, start: int, stop: int) -> torch.Tensor:
    """Initial weights of rows ``start:stop`` of ``table`` (the ``index``-th of its plan): uniform
    in ±1/sqrt(init_rows or num_embeddings), DLRM's rule. (stop - start, dim) float32."""
    bound = 1.0 / math.sqrt(table.init_rows or table.num_embeddings)
    parts = []
    for block in range(start // INIT_BLOCK_ROWS, (stop - 1) // INIT_BLOCK_ROWS + 1):
        first = block * INIT_BLOCK_ROWS
        rows = min(INIT_BLOCK_ROWS, table.num_embeddings - first)
        gen = torch.Generator().manual_seed(hash((seed, index, block)) & 0x7FFF_FFFF_FFFF_FFFF)
        values = torch.empty(rows, table.dim).uniform_(-bound, bound, generator=gen)
        parts.append(values[max(start - first, 0) : stop - first])
    return parts[0] if len(parts) == 1 else torch.cat(parts)


_FBGEMM_OPTIM = {
    TableOptimizer.rowwise_adagrad: EmbOptimType.EXACT_ROWWISE_ADAGRAD,
    # FBGEMM refuses plain SGD on CPU; EXACT_SGD is the same update without sparse atomics.
    TableOptimizer.sgd: EmbOptimType.EXACT_SGD,
}


def fbgemm_optimizer(kind: TableOptimizer | str) -> EmbOptimType:
    return _FBGEMM_OPTIM[TableOptimizer(kind)]


# a tier of whole tables on a GPU → FBGEMM's location (torchrec's compute kernels: fused,
# fused_uvm_caching, fused_uvm)
_CUDA_LOCATIONS = {
    "device": EmbeddingLocation.DEVICE,
    "uvm_cache": EmbeddingLocation.MANAGED_CACHING,
    "host": EmbeddingLocation.MANAGED,
}
FBGEMM_CACHE_ALGORITHMS = {"lru": CacheAlgorithm.LRU, "lfu": CacheAlgorithm.LFU}


def _check_cpu_table_bytes(tables: list[PhysicalTable], kind: TableOptimizer) -> None:
    """Refuse tables FBGEMM's CPU row-wise Adagrad would update wrongly, naming them."""
    too_big = [t for t in tables if t.weight_bytes > FBGEMM_CPU_MAX_TABLE_BYTES]
    if kind is TableOptimizer.rowwise_adagrad and too_big:
        named = ", ".join(f"{t.name} ({t.num_embeddings:,} rows x {t.dim}: {t.weight_bytes:,} bytes)" for t in too_big)
        raise ValueError(
            f"tables {named}: FBGEMM's CPU row-wise Adagrad updates the wrong rows past {FBGEMM_CPU_MAX_TABLE_BYTES:,} "
            "bytes of one table's weights. Set placement.ram_budget below the tables' bytes (the tiered lookup cuts every "
            "table into pieces under that; placement.cold_tier=ram keeps the cold rows in RAM too)"
        )


def host_tier_stats(tbes: list[SplitTableBatchedEmbeddingBagsCodegen], tier: str, counts_misses: bool,
                    total: Optional[Callable[[dict], dict]] = None) -> dict:
    """Bytes and GPU-cache hit rate of FBGEMM lookups whose tables live in host memory on a GPU
    (``uvm_cache``: FBGEMM caches the hot rows in GPU memory; ``host``: no cache).

    ``hit_rate`` is the share of each batch's distinct rows that were already in the GPU cache
    (FBGEMM's unique misses over unique ids, summed over batches and lookups), where the lookups
    ``counts_misses`` (built with ``gather_uvm_cache_stats``: LRU only; LFU's cache fill does not
    count misses); else None. ``total`` sums the counts over other processes' lookups too (a
    sharded run's ranks, every one with the same keys) before the rate is taken."""
    counts = {"host_bytes": 0, "device_cache_bytes": 0}
    for tbe in tbes:
        counts["host_bytes"] += tbe.weights_uvm.numel() * tbe.weights_uvm.element_size()
        if tier == "uvm_cache":
            counts["device_cache_bytes"] += tbe.lxu_cache_weights.numel() * tbe.lxu_cache_weights.element_size()
    if counts_misses:
        stats = [tbe.get_uvm_cache_stats().tolist() for tbe in tbes]  # calls, ids, unique ids, unique misses, ...
        counts["unique_ids"], counts["unique_misses"] = sum(int(s[2]) for s in stats), sum(int(s[3]) for s in stats)
    if total is not None:
        counts = total(counts)
    hit_rate = 1.0 - counts["unique_misses"] / max(counts["unique_ids"], 1) if "unique_ids" in counts else None
    return {"tier": tier, **counts, "hit_rate": hit_rate}


def checked_table_state(states: dict, table: PhysicalTable, kind: TableOptimizer, optimizer_state: bool) -> tuple:
    """``table``'s saved weights and, where ``optimizer_state`` and row-wise Adagrad ask for it,
    its saved state, from ``states`` (``{table: {"weight": (rows, dim), "momentum1": (rows,)}}``:
    tensors, or :class:`~recsys.embeddings.saved_tables.TableRows`), checked against the table;
    the state is None where none is loaded."""
    state = states.get(table.name)
    if state is None:
        raise KeyError(f"table {table.name}: not in the checkpoint (it has {sorted(states)})")
    weight = state["weight"]
    if len(weight) != table.num_embeddings or tuple(weight[0:1].shape[1:]) != (table.dim,):
        raise ValueError(
            f"table {table.name}: the checkpoint holds {len(weight)} rows of width {tuple(weight[0:1].shape[1:])}, this "
            f"table has {table.num_embeddings} of width {table.dim} (a checkpoint of another plan?)"
        )
    if not (optimizer_state and kind is TableOptimizer.rowwise_adagrad):
        return weight, None
    saved = state.get("momentum1")
    if saved is None or len(saved) != table.num_embeddings:
        raise ValueError(
            f"table {table.name}: the checkpoint's momentum1 has {None if saved is None else len(saved)} rows, this "
            f"table's row-wise Adagrad needs {table.num_embeddings} (a checkpoint of another optimizer? load the weights only)"
        )
    return weight, saved


class TableBatchedLookup(nn.Module):
    """Sum-pooled lookup of all physical tables in one FBGEMM call, optimizer fused in backward.

    Args:
        tables: the physical tables, in the order their pooled outputs are concatenated.
        optimizer: the fused table optimizer.
        device: ``cpu`` or a CUDA device.
        seed: seed of the initial weights (:func:`init_rows`); None leaves them for the caller
            to set (a table split into tiers initialises each part from its whole table's rows).
        slot_tables: the table each lookup slot reads (FBGEMM's ``feature_table_map``);
            default one slot per table. Several slots may share a table.
        host_buffers: FBGEMM's ``preallocated_host_buffers`` (``weights``, ``momentum1``: flat
            float32 tensors, e.g. memory-mapped files), used instead of allocating RAM.
        placement: the tier of the tables on a GPU (``placement.hot_tier``: ``device`` memory,
            ``uvm_cache`` with its ``cache_load_factor`` and ``cache_algorithm``, or ``host``
            memory read through unified memory); default the device's own memory. On the CPU
            tables are in RAM.

    Forward takes the KeyedJaggedTensor layout: ``values`` (N,) int64 ids and ``offsets``
    (S*B + 1,) with slots major, and returns (B, Σ slot dim) float32. With ``bags_per_slot``
    the slots may have different bag counts (FBGEMM's variable batch size), and the output is
    flat: slot by slot, (bags_s, dim_s) each. ``ids_checked=True`` says the caller has checked
    every id against its table (``recsys::transform_ids`` with ``slot_rows``), so that call skips
    FBGEMM's own bounds check (which zeroes an out-of-range id with a warning); it is decided per
    call, so a caller that switches to unchecked ids gets the check back.
    """

    def __init__(
        self,
        tables: list[PhysicalTable],
        optimizer: TableOptimizerConfig,
        device: torch.device | str = "cpu",
        seed: Optional[int] = 0,
        slot_tables: list[int] | None = None,
        host_buffers: dict[str, torch.Tensor] | None = None,
        placement: PlacementConfig | None = None,
    ) -> None:
        super().__init__()
        if not tables:
            raise ValueError("TableBatchedLookup needs at least one table")
        names = [t.name for t in tables]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate physical table names: {names}")
        self.tables = list(tables)
        self.optimizer_config = optimizer
        device = torch.device(device)
        placement = placement or PlacementConfig()
        placement.check_device(device.type)
        self.tier = placement.tier_on(device.type)
        on_gpu = device.type == "cuda"
        if not on_gpu:
            _check_cpu_table_bytes(tables, TableOptimizer(optimizer.kind))
        location = _CUDA_LOCATIONS[self.tier] if on_gpu else EmbeddingLocation.HOST
        compute = ComputeDevice.CUDA if on_gpu else ComputeDevice.CPU
        options = {}  # only what differs from FBGEMM's defaults (older FBGEMM lacks preallocated_host_buffers)
        if host_buffers is not None:
            options["preallocated_host_buffers"] = host_buffers
        if self.tier == "uvm_cache":
            options.update(
                cache_load_factor=placement.cache_load_factor,
                cache_algorithm=FBGEMM_CACHE_ALGORITHMS[placement.cache_algorithm],
                # FBGEMM counts a batch's distinct rows and those it had to fetch (LRU only)
                gather_uvm_cache_stats=placement.cache_algorithm == "lru",
            )
        self.tbe = SplitTableBatchedEmbeddingBagsCodegen(
            [(t.num_embeddings, t.dim, location, compute) for t in tables],
            optimizer=fbgemm_optimizer(optimizer.kind),
            learning_rate=optimizer.lr,
            eps=optimizer.eps,
            weight_decay=optimizer.weight_decay,
            pooling_mode=PoolingMode.SUM,
            device=device,
            feature_table_map=slot_tables,
            **options,
        )
        self._bounds_check = self.tbe.bounds_check_mode_int  # FBGEMM's (or FBGEMM_TBE_BOUNDS_CHECK_MODE's) mode
        if self.tier == "uvm_cache":  # a checkpoint saves the host rows: write the cache's newer rows back first
            self.register_state_dict_pre_hook(lambda module, prefix, keep_vars: module.tbe.flush())
        if seed is not None:
            self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        for index, (table, weight) in enumerate(zip(self.tables, self.tbe.split_embedding_weights())):
            for start in range(0, table.num_embeddings, INIT_WRITE_ROWS):
                stop = min(start + INIT_WRITE_ROWS, table.num_embeddings)
                weight[start:stop] = init_rows(table, index, seed, start, stop)

    def table_weights(self) -> dict[str, torch.Tensor]:
        """Views of each table's (num_embeddings, dim) weights, by table name (the GPU cache of
        ``uvm_cache`` tables is written back first: FBGEMM's cache holds the newest rows)."""
        if self.tier == "uvm_cache":
            self.tbe.flush()
        return {t.name: w for t, w in zip(self.tables, self.tbe.split_embedding_weights())}

    @torch.no_grad()
    def load_tables(self, states: dict, optimizer_state: bool = True) -> None:
        """Copy whole tables in, by name: ``{table: {"weight": (rows, dim), "momentum1": (rows,)}}``
        (a sharded checkpoint's tensors, or :func:`~recsys.embeddings.saved_tables.saved_tables` of
        another layout's state); ``optimizer_state=False`` loads the weights only."""
        # per table: [momentum1] with row-wise Adagrad; SGD has no state (an empty list)
        momenta = self.tbe.split_optimizer_states() or [[] for _ in self.tables]
        kind = TableOptimizer(self.optimizer_config.kind)
        for table, weight, momentum in zip(self.tables, self.tbe.split_embedding_weights(), momenta):
            saved_weight, saved_momentum = checked_table_state(states, table, kind, optimizer_state)
            weight.copy_(saved_weight[0 : table.num_embeddings])
            if saved_momentum is not None:
                momentum[0].copy_(saved_momentum[0 : table.num_embeddings])

    @property
    def output_dims(self) -> list[int]:
        return [t.dim for t in self.tables]

    def get_learning_rate(self) -> float:
        return self.tbe.get_learning_rate()

    def set_learning_rate(self, lr: float) -> None:
        """The fused optimizer's rate from the next backward on (a schedule sets it each step)."""
        self.tbe.set_learning_rate(lr)

    def tiers(self) -> dict | None:
        """Bytes per tier and the GPU cache's hit rate for ``uvm_cache`` and ``host`` tables on a
        GPU (:func:`host_tier_stats`); None for tables in the device's own memory."""
        if self.tier not in ("uvm_cache", "host") or self.tbe.current_device.type != "cuda":
            return None
        return host_tier_stats([self.tbe], self.tier, counts_misses=self.tbe.gather_uvm_cache_stats)

    def forward(self, values: torch.Tensor, offsets: torch.Tensor, bags_per_slot: list[int] | None = None,
                per_sample_weights: torch.Tensor | None = None, ids_checked: bool = False) -> torch.Tensor:
        """Pooled (SUM) rows of each bag, each row times its weight where ``per_sample_weights`` (M,) is given."""
        self.tbe.bounds_check_mode_int = BoundsCheckMode.NONE.value if ids_checked else self._bounds_check
        if bags_per_slot is None:
            return self.tbe(values, offsets, per_sample_weights)  # (B, Σ slot dim)
        return self.tbe(values, offsets, per_sample_weights, batch_size_per_feature_per_rank=[[b] for b in bags_per_slot])
