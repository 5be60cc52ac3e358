"""The plan's physical tables as a torchrec ``EmbeddingBagCollection``, so DistributedModelParallel
can shard them, whatever the embedding method.

One process keeps :class:`~recsys.embeddings.tables.TableBatchedLookup` (one direct FBGEMM call,
nothing in between). A sharded run swaps it for :class:`ShardableLookup`: the same physical
tables as torchrec ``EmbeddingBagConfig``s in one ``EmbeddingBagCollection`` fed by a
KeyedJaggedTensor whose keys are the plan's lookup slots. DistributedModelParallel then replaces
the collection with a sharded one (table-, row-, column- or table-row-wise, torchrec's planner
choosing among the types allowed), each rank running ONE fused FBGEMM call over its shards with
the optimizer in the backward; the per-feature transforms before it and combiners after it stay
data-parallel (as torchrec's managed-collision modules remap ids before a sharded lookup).

With a ``placement.ram_budget`` the tiered lookup (:class:`~recsys.embeddings.placement.TieredLookup`)
holds two of them: the tables' hot prefixes in RAM, and their cold tails, cut into pieces, in a
:class:`ColdEmbeddingBagCollection` that DistributedModelParallel shards row-wise with its own
sharder, whose FBGEMM host buffer is a memory-mapped file of the rank's cold rows.

Slots with one bag per id (compositional ``mult``, OptEmbed masks) have more bags than the
batch. torchrec's variable-batch KJTs would carry them, but a sharded module locks to the kind of
KJT it sees first, and its variable-batch output is re-expanded to one common batch size; so the
KJT here is always a plain one whose stride is the largest bag count of the step on any rank,
other slots' bags padded with empty bags (pooled to zeros, then dropped). Criteo's features are
single-hot, where every slot has exactly the batch's bags and nothing is padded.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List, Optional

import torch
import torch.distributed as dist
from fbgemm_gpu.split_table_batched_embeddings_ops_training import SplitTableBatchedEmbeddingBagsCodegen
from torch import nn
from torchrec.distributed.batched_embedding_kernel import BaseBatchedEmbeddingBag
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.types import CacheParams
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.specs import ShardingType, TableOptimizerConfig
from recsys.embeddings.tables import (
    FBGEMM_CACHE_ALGORITHMS,
    INIT_WRITE_ROWS,
    PhysicalTable,
    fbgemm_optimizer,
    host_tier_stats,
    init_rows,
)

# torchrec's compute kernel for the tier of whole tables on a GPU (placement.hot_tier); on the CPU
# every table is in RAM, the ``fused`` kernel
GPU_TIER_KERNELS = {
    "device": EmbeddingComputeKernel.FUSED.value,
    "uvm_cache": EmbeddingComputeKernel.FUSED_UVM_CACHING.value,
    "host": EmbeddingComputeKernel.FUSED_UVM.value,
}


def _written_by_init_shards(weight: torch.Tensor) -> None:
    """A table's ``init_fn`` for torchrec, which calls it on every shard as it shards the
    collection (another whole pass over the tables, through the mapping for a disk tier's file):
    nothing, :meth:`ShardableLookup.init_shards` writes the rows a single process starts from."""


@contextlib.contextmanager
def kernels_left_unfilled() -> Iterator[None]:
    """While DistributedModelParallel builds the fused kernels: torchrec's kernels fill each
    shard with uniform noise as they are made, a whole pass over the tables (through the mapping,
    for a disk tier's file: every page of it resident) that :meth:`ShardableLookup.init_shards`
    overwrites at once with the rows a single process starts from; this skips it."""
    original = BaseBatchedEmbeddingBag.init_parameters
    BaseBatchedEmbeddingBag.init_parameters = lambda self: None
    try:
        yield
    finally:
        BaseBatchedEmbeddingBag.init_parameters = original


def slot_name(slot: int) -> str:
    return f"slot_{slot}"


class ColdEmbeddingBagCollection(EmbeddingBagCollection):
    """The cold tails' tables: an ``EmbeddingBagCollection`` of a type of its own, so that
    DistributedModelParallel shards it with its own sharder (whose fused params carry the rank's
    cold file, :class:`SharedHostBuffers`)."""


class SharedHostBuffers(dict):
    """FBGEMM's ``preallocated_host_buffers`` (a memory-mapped file) passed through torchrec's
    fused params, which torchrec deep-copies per table and groups tables by: one shared handle,
    hashed by identity, so every table of the group lands in the one buffer, never copied."""

    def __hash__(self) -> int:  # type: ignore[override]
        return id(self)

    def __deepcopy__(self, memo: dict) -> "SharedHostBuffers":
        return self


class ShardableLookup(nn.Module):
    """All physical tables in one torchrec ``EmbeddingBagCollection``: DMP shards it.

    Same contract as :class:`~recsys.embeddings.tables.TableBatchedLookup`: ``forward(values,
    offsets, bags_per_slot)`` with slot-major jagged ids returns (B, Σ slot dim) when every slot
    has B bags, else the flat per-slot (bags_s, dim_s) blocks. Built on the ``meta`` device: no
    table is allocated until sharding places each shard on its rank, where
    :meth:`init_shards` writes the same initial rows a single process would have.

    Args:
        tables: the plan's physical tables.
        optimizer: the fused table optimizer (passed to the sharder as FBGEMM's fused params).
        slot_tables: the table each lookup slot reads.
        seed: initial-weight seed (see :func:`recsys.embeddings.tables.init_rows`).
        placement: the tables' tier on a GPU (``placement.hot_tier``: ``device`` memory,
            ``uvm_cache`` or ``host``), which picks torchrec's compute kernel for every shard
            (``fused``, ``fused_uvm_caching`` with ``cache_load_factor`` and ``cache_algorithm``,
            ``fused_uvm``); on the CPU tables are in RAM (``fused``).
        device_type: ``cpu`` or ``cuda``, where the shards will live.
        origins: per table, the plan's table whose rows it holds and the first of them (a
            tiered lookup's pieces, whose initial rows are their whole table's); default each
            table is its own, from row 0.
        cold: the cold tails of a tiered lookup: a :class:`ColdEmbeddingBagCollection`, always
            sharded row-wise (rows whole, every shard within its piece), its shards in the rank's
            cold file (:meth:`sharder`'s ``host_buffers``).
    """

    def __init__(self, tables: list[PhysicalTable], optimizer: TableOptimizerConfig, slot_tables: list[int], seed: int = 0,
                 placement: PlacementConfig | None = None, device_type: str = "cpu",
                 origins: list[tuple[PhysicalTable, int, int]] | None = None, cold: bool = False) -> None:
        super().__init__()
        self.tables = list(tables)
        self.origins = origins if origins is not None else [(t, i, 0) for i, t in enumerate(tables)]
        self.cold = cold
        self.optimizer_config = optimizer
        self.seed = seed
        self.placement = placement or PlacementConfig()
        self.placement.check_device(device_type)
        self.tier = self.placement.tier_on(device_type)
        self.on_gpu = device_type == "cuda"
        self.slot_tables = list(slot_tables)
        self.slot_dims = [tables[t].dim for t in slot_tables]
        self.keys = [slot_name(s) for s in range(len(slot_tables))]
        configs = [
            EmbeddingBagConfig(
                num_embeddings=t.num_embeddings,
                embedding_dim=t.dim,
                name=t.name,
                feature_names=[slot_name(s) for s, table in enumerate(slot_tables) if table == i],
                pooling=PoolingType.SUM,
                init_fn=_written_by_init_shards,
            )
            for i, t in enumerate(tables)
        ]
        unread = [c.name for c in configs if not c.feature_names]
        if unread:
            raise ValueError(f"physical tables {unread} are read by no slot")
        collection = ColdEmbeddingBagCollection if cold else EmbeddingBagCollection
        self.ebc = collection(configs, device=torch.device("meta"))

    @torch.no_grad()
    def init_shards(self, write: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> None:
        """Write each local shard's initial rows, once DistributedModelParallel has sharded the
        collection: the values :func:`~recsys.embeddings.tables.init_rows` gives a single process
        (each table's rows of its origin's), so a sharded run starts where a one-process run
        starts. In blocks of rows, each put in by ``write(view of the shard, values)`` (default a
        copy; a disk tier's cold file takes file writes)."""
        write = write or (lambda view, values: view.copy_(values))
        origin = {t.name: o for t, o in zip(self.tables, self.origins)}
        for key, tensor in self.ebc.state_dict().items():
            if not key.endswith(".weight"):
                continue
            table, index, first = origin[key.split(".")[-2]]
            for shard in tensor.local_shards():
                (row0, col0), (rows, cols) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                for start in range(0, rows if cols else 0, INIT_WRITE_ROWS):
                    stop = min(start + INIT_WRITE_ROWS, rows)
                    values = init_rows(table, index, self.seed, first + row0 + start, first + row0 + stop)  # (stop - start, dim)
                    write(shard.tensor[start:stop], values[:, col0 : col0 + cols])

    def shardable_parts(self) -> list[tuple[str, "ShardableLookup"]]:
        """The torchrec collections DistributedModelParallel shards, by their path under this
        module (here: itself; a tiered lookup has two)."""
        return [("", self)]

    @property
    def sharding_types(self) -> list[str] | None:
        """The sharding types this collection's tables must take (cold tails: row-wise); None
        where the run's ``sharding.types`` and overrides decide."""
        return [ShardingType.row_wise.value] if self.cold else None

    def _apply(self, fn, recurse: bool = True):
        # ``model.to(device)`` before sharding must leave the unallocated (meta) tables alone:
        # sharding allocates each shard on its rank's device
        if isinstance(self.ebc, EmbeddingBagCollection):
            return self
        return super()._apply(fn, recurse)

    def fused_params(self) -> dict:
        """FBGEMM's arguments for torchrec's sharders: the fused optimizer, and for an LRU GPU
        cache its hit counts."""
        opt = self.optimizer_config
        params = {"optimizer": fbgemm_optimizer(opt.kind), "learning_rate": opt.lr, "eps": opt.eps, "weight_decay": opt.weight_decay}
        if self.counts_cache_misses:
            params["gather_uvm_cache_stats"] = True
        return params

    @property
    def counts_cache_misses(self) -> bool:
        """Whether FBGEMM counts the GPU cache's misses (an LRU ``uvm_cache``)."""
        return self.tier == "uvm_cache" and self.placement.cache_algorithm == "lru"

    def sharder(self, host_buffers: SharedHostBuffers | None = None) -> "RecsysEBCSharder":
        """The sharder DistributedModelParallel and the planner take for this collection; with
        ``host_buffers``, FBGEMM's weights of this rank's shards (one group: cold tails only)."""
        kernel = GPU_TIER_KERNELS[self.tier] if self.on_gpu else EmbeddingComputeKernel.FUSED.value
        cache = None
        if kernel == EmbeddingComputeKernel.FUSED_UVM_CACHING.value:
            cache = CacheParams(algorithm=FBGEMM_CACHE_ALGORITHMS[self.placement.cache_algorithm], load_factor=self.placement.cache_load_factor)
        params = self.fused_params()
        if host_buffers is not None:
            params["preallocated_host_buffers"] = host_buffers
        return RecsysEBCSharder(kernel, cache, fused_params=params, module_type=type(self.ebc))

    def tiers(self) -> dict | None:
        """Bytes per tier and the GPU cache's hit rate (:func:`~recsys.embeddings.tables.host_tier_stats`)
        over every rank's shards, for ``uvm_cache`` and ``host`` tables on a GPU; None for tables
        in the device's own memory or on the CPU. Every rank must call it (it sums over ranks)."""
        if not self.on_gpu or self.tier not in ("uvm_cache", "host"):
            return None
        return host_tier_stats(local_tbes(self.ebc), self.tier, self.counts_cache_misses, total=sum_over_ranks)

    def table_weights(self) -> dict[str, torch.Tensor]:
        """This rank's local shard of each table's weights, by table name (the whole table
        only where a table lives entirely on this rank)."""
        out = {}
        for name, tensor in self.ebc.state_dict().items():
            table = name.split(".")[-2]
            shards = tensor.local_shards() if hasattr(tensor, "local_shards") else None
            if shards is None:
                out[table] = tensor
            elif shards:
                out[table] = shards[0].tensor
        return out

    def forward(self, values: torch.Tensor, offsets: torch.Tensor, bags_per_slot: Optional[List[int]] = None) -> torch.Tensor:
        slots = len(self.keys)
        lengths = offsets[1:] - offsets[:-1]  # (Σ bags,)
        bags = bags_per_slot or [lengths.numel() // slots] * slots
        stride = _common_stride(max(bags))
        if bags_per_slot is None and stride == bags[0]:
            kjt = KeyedJaggedTensor(keys=self.keys, values=values, lengths=lengths)
            return self._slot_columns(self.ebc(kjt))  # (B, Σ slot dim)
        per_slot = torch.split(lengths, bags)
        padded = torch.cat([torch.nn.functional.pad(l, (0, stride - b)) for l, b in zip(per_slot, bags)])  # (S * stride,)
        kjt = KeyedJaggedTensor(keys=self.keys, values=values, lengths=padded, stride=stride)
        columns = torch.split(self._slot_columns(self.ebc(kjt)), self.slot_dims, dim=1)  # S x (stride, dim_s)
        if bags_per_slot is None:
            return torch.cat([c[: bags[0]] for c in columns], dim=1)  # (B, Σ slot dim)
        return torch.cat([columns[s][: bags[s]].reshape(-1) for s in range(slots)])  # Σ bags_s * dim_s

    def _slot_columns(self, pooled: KeyedTensor) -> torch.Tensor:
        """The collection's output in slot order (it comes table-major, and sharded, grouped by
        sharding type)."""
        if pooled.keys() == self.keys:
            return pooled.values()
        by_slot = pooled.to_dict()
        return torch.cat([by_slot[k] for k in self.keys], dim=1)


def sum_over_ranks(counts: dict[str, int], device: str = "cuda") -> dict[str, int]:
    """Each count summed over every rank (this rank's where there is no process group), through
    a tensor on ``device`` (the process group's: ``cuda`` for nccl, ``cpu`` for gloo)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return counts
    summed = torch.tensor(list(counts.values()), dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return {key: int(value) for key, value in zip(counts, summed.tolist())}


def _common_stride(stride: int) -> int:
    """The largest of every rank's ``stride``: row-wise sharding exchanges equal-sized pooled
    blocks, so every rank's KJT needs the same stride (per-id slots and an epoch's last batch
    differ between ranks). One small all-reduce per step."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return stride
    agreed = torch.tensor([stride])
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return int(agreed)


class RecsysEBCSharder(EmbeddingBagCollectionSharder):
    """torchrec's collection sharder with every sharding type offered on CPU as well (the
    default one lists row- and table-row-wise for CUDA only, though the fused CPU kernel runs
    them), and one compute kernel, a fused one (the optimizer in the backward) chosen by the
    tables' tier (:meth:`ShardableLookup.sharder`), with its GPU cache's ``cache_params``; for
    collections of ``module_type`` (a :class:`ColdEmbeddingBagCollection` gets a sharder of its own)."""

    def __init__(self, kernel: str = EmbeddingComputeKernel.FUSED.value, cache_params: CacheParams | None = None,
                 fused_params: dict | None = None, module_type: type = EmbeddingBagCollection) -> None:
        super().__init__(fused_params=fused_params)
        self.kernel = kernel
        self.cache_params = cache_params
        self._module_type = module_type

    @property
    def module_type(self) -> type:
        return self._module_type

    def sharding_types(self, compute_device_type: str) -> List[str]:
        return [t.value for t in ShardingType]

    def compute_kernels(self, sharding_type: str, compute_device_type: str) -> List[str]:
        return [self.kernel]


def local_tbes(module: nn.Module) -> list[SplitTableBatchedEmbeddingBagsCodegen]:
    """The fused FBGEMM table-batched lookups in ``module`` on this rank (one per group of shards
    torchrec batches together: one per sharding type present on the rank)."""
    # a sharded collection keeps its lookups in a plain list (``_lookups``, not registered
    # children), and torchrec's fused kernels hold the FBGEMM module as ``emb_module``
    modules = list(module.modules())
    modules += [m for owner in modules for lookup in getattr(owner, "_lookups", []) for m in lookup.modules()]
    kernels = [getattr(m, "emb_module", None) for m in modules] + modules
    return list({id(k): k for k in kernels if isinstance(k, SplitTableBatchedEmbeddingBagsCodegen)}.values())


def tbe_calls(module: nn.Module) -> int:
    """Fused FBGEMM lookups ``module`` runs per step on this rank."""
    return len(local_tbes(module))
