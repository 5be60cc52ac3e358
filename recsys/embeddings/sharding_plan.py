"""torchrec's sharding plan for a lookup's collections, and the plan described for people.

:func:`plan_sharding` turns ``sharding.types``, the per-feature overrides and each rank's memory
into torchrec planner constraints (:func:`table_constraints`) and runs torchrec's planner, refusing
what cannot fit with the tables' bytes and the limit; :func:`describe_plan` and :func:`format_plan`
give the ``sharding_plan.json`` records and the logged table; :func:`bytes_per_rank` and
:func:`rank_values` read what a plan puts on each rank.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch.distributed as dist
from torch import nn
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.planner.storage_reservations import HeuristicalStorageReservation
from torchrec.distributed.planner import types as planner_types
from torchrec.distributed.planner.types import PlannerError
from torchrec.distributed.types import ShardingPlan

from recsys.core.units import format_bytes
from recsys.embeddings.plan import EmbeddingPlan
from recsys.embeddings.sharding import RecsysEBCSharder
from recsys.embeddings.specs import ShardingType, TableOptimizer
from recsys.embeddings.tables import FBGEMM_CPU_MAX_TABLE_BYTES, PhysicalTable, optimizer_state_bytes


class ShardingPlanError(ValueError):
    """A sharding request that cannot be met (unknown feature or type, tables that do not fit)."""


def table_constraints(
    plan: EmbeddingPlan,
    types: list[ShardingType | str],
    overrides: dict[str, ShardingType | str],
    min_partition: Optional[int] = None,
    sharder: Optional[RecsysEBCSharder] = None,
    tables: Optional[list[tuple[PhysicalTable, int]]] = None,
) -> dict[str, ParameterConstraints]:
    """torchrec planner constraints per physical table: the allowed ``types``, or the one type a
    logical feature's override names for all of that feature's tables; column-wise shards
    ``min_partition`` wide (torchrec's default where None); the ``sharder``'s compute kernel and
    cache parameters (default the fused kernel). ``tables``: the collection's tables, each with
    the index of the plan's table whose rows it holds (a tiered lookup's pieces; default the
    plan's tables)."""
    sharder = sharder or RecsysEBCSharder()
    tables = tables if tables is not None else [(t, i) for i, t in enumerate(plan.tables)]
    known = {t.value for t in ShardingType}
    for key, value in [("sharding.types", t) for t in types] + [(f"sharding.overrides.{f}", t) for f, t in overrides.items()]:
        if str(getattr(value, "value", value)) not in known:
            raise ShardingPlanError(f"{key}: unknown sharding type {value!r} (known: {sorted(known)})")
    if not types:
        raise ShardingPlanError("sharding.types is empty: allow at least one sharding type")
    if min_partition is not None and min_partition < 1:
        raise ShardingPlanError(f"sharding.min_partition: {min_partition} is not a column count (>= 1)")
    features = {f.name: f for f in plan.features}
    forced: dict[str, tuple[str, str]] = {}  # table -> (type, feature that asked)
    for feature, kind in overrides.items():
        if feature not in features:
            raise ShardingPlanError(f"sharding.overrides.{feature}: no such feature (features: {sorted(features)})")
        kind = ShardingType(kind).value
        for slot in features[feature].slots:
            table = plan.tables[plan.slots[slot].table].name
            if table in forced and forced[table][0] != kind:
                raise ShardingPlanError(
                    f"sharding.overrides: table {table} is shared by {forced[table][1]} ({forced[table][0]}) "
                    f"and {feature} ({kind}); give them the same type"
                )
            forced[table] = (kind, feature)
    allowed = [ShardingType(t).value for t in types]
    return {
        t.name: ParameterConstraints(
            sharding_types=[forced[whole][0]] if (whole := plan.tables[index].name) in forced else allowed,
            compute_kernels=[sharder.kernel],
            min_partition=min_partition,
            cache_params=sharder.cache_params,
        )
        for t, index in tables
    }


def plan_sharding(
    model: nn.Module,
    plan: EmbeddingPlan,
    sharder: RecsysEBCSharder,
    world_size: int,
    rank_memory: int,
    optimizer: TableOptimizer,
    types: list[ShardingType | str],
    overrides: dict[str, ShardingType | str],
    device_type: str = "cpu",
    pg: Optional[dist.ProcessGroup] = None,
    min_partition: Optional[int] = None,
    host_memory: Optional[int] = None,
    tables: Optional[list[tuple[PhysicalTable, int]]] = None,
    memory_name: str = "sharding.rank_memory",
) -> ShardingPlan:
    """torchrec's sharding plan for ``model``'s :class:`ShardableLookup` on ``world_size`` ranks
    of ``rank_memory`` bytes each (RAM on the CPU, GPU memory on a GPU), within the allowed types
    and overrides. With ``pg`` every rank gets rank 0's plan. A model that cannot fit fails here,
    naming its largest tables and the limit. ``min_partition``: the width of column-wise shards
    (see :func:`table_constraints`). On a GPU, tables in host memory (``sharder.kernel``
    ``fused_uvm_caching`` or ``fused_uvm``) take ``host_memory`` bytes of each rank's RAM
    (default torchrec's), and of its GPU memory only their cache. ``tables``: the collection's
    tables and the plan's table each holds rows of (see :func:`table_constraints`);
    ``memory_name`` says what ``rank_memory`` is, in errors (a tiered lookup's cold tails: free disk)."""
    constraints = table_constraints(plan, types, overrides, min_partition, sharder, tables)
    tables = tables if tables is not None else [(t, i) for i, t in enumerate(plan.tables)]
    need = {t.name: t.weight_bytes + optimizer_state_bytes(t, optimizer) for t, _ in tables}
    in_host = device_type == "cuda" and sharder.kernel != EmbeddingComputeKernel.FUSED.value
    limits = [(rank_memory, memory_name, need)]
    if in_host:
        cached = sharder.cache_params.load_factor if sharder.cache_params is not None else 0.0
        limits = [(rank_memory, "sharding.rank_memory, GPU memory for the cache", {k: v * cached for k, v in need.items()})]
        if host_memory is not None:
            limits.append((host_memory, "host memory", need))
    for limit, what, bytes_needed in limits:
        if sum(bytes_needed.values()) > world_size * limit:
            raise ShardingPlanError(_too_big(bytes_needed, world_size, limit, what))
    cap = {"hbm_cap": rank_memory} if device_type == "cuda" else {"ddr_cap": rank_memory, "hbm_cap": 0}
    if device_type == "cuda" and host_memory is not None:
        cap["ddr_cap"] = host_memory
    topology = _topology(world_size, device_type, cap)
    # what the dense layers need beside the shards, in torchrec's rule (6x the parameters' bytes:
    # weights, gradients, optimizer state), counted here: torchrec's own count takes every
    # parameter of a collection this planner does not shard (a tiered lookup's other part) for dense
    dense = sum(p.numel() * p.element_size() for p in model.parameters() if not p.is_meta)
    with warnings.catch_warnings():  # it warns on every construction, even with the estimate it asks to be given
        warnings.filterwarnings("ignore", message="HeuristicalStorageReservation is known", category=FutureWarning)
        reservation = HeuristicalStorageReservation(percentage=0.15, parameter_multiplier=6.0, dense_tensor_estimate=max(6 * dense, 1))
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints, storage_reservation=reservation)
    try:
        sharding = planner.plan(model, [sharder]) if pg is None else planner.collective_plan(model, [sharder], pg)
    except PlannerError as error:
        limit, what, bytes_needed = limits[0]
        raise ShardingPlanError(f"{_too_big(bytes_needed, world_size, limit, what)}\ntorchrec's planner: {error}") from error
    if device_type == "cpu" and optimizer is TableOptimizer.rowwise_adagrad:
        _check_cpu_shard_bytes(sharding)
    return sharding


def _check_cpu_shard_bytes(sharding: ShardingPlan) -> None:
    """Refuse shards that FBGEMM's CPU row-wise Adagrad would update wrongly (over
    ``FBGEMM_CPU_MAX_TABLE_BYTES`` of weights: each shard is one FBGEMM table on its rank), naming them."""
    too_big = []
    for params in sharding.plan.values():
        for name, p in params.items():
            for shard in p.sharding_spec.shards if p.sharding_spec is not None else []:
                rows, dim = shard.shard_sizes
                if rows * dim * 4 > FBGEMM_CPU_MAX_TABLE_BYTES:
                    too_big.append(f"{name} ({p.sharding_type}, rank {shard.placement.rank()}: {rows:,} rows x {dim})")
    if too_big:
        raise ShardingPlanError(
            f"shards {', '.join(too_big)} hold over {FBGEMM_CPU_MAX_TABLE_BYTES:,} bytes of weights: FBGEMM's CPU row-wise "
            "Adagrad updates the wrong rows past that. Shard those tables row_wise over more ranks "
            "(+sharding.overrides.FEATURE=row_wise), or train them in one process with placement.ram_budget"
        )


def _topology(world_size: int, device_type: str, cap: dict) -> Topology:
    """torchrec's Topology for ``world_size`` ranks of ``device_type`` with the memory ``cap``s,
    through ``TopologyFactory`` where torchrec has it (1.8: a Topology built directly logs a
    warning on every rank; 1.6, the GPU machine's, has no factory)."""
    factory = getattr(planner_types, "TopologyFactory", None)
    if factory is None:
        return Topology(world_size=world_size, compute_device=device_type, local_world_size=world_size, **cap)
    trainer = planner_types.TrainerConfig(world_size=world_size, local_world_size=world_size,
                                          **{f"{tier}_bytes": limit for tier, limit in cap.items()})
    return factory.create_topology(trainer_config=trainer, kernel_config=planner_types.KernelConfig(compute_device=device_type))


def _too_big(need: dict[str, float], world_size: int, limit: int, what: str) -> str:
    largest = sorted(need.items(), key=lambda kv: -kv[1])[:5]
    return (
        f"the embedding tables need {format_bytes(int(sum(need.values())))} (weights + optimizer state), "
        f"{world_size} rank(s) hold {format_bytes(limit)} each ({what}); largest: "
        + ", ".join(f"{name} {format_bytes(int(b))}" for name, b in largest)
    )


def bytes_per_rank(sharding: ShardingPlan, lookup_path: str, tables: list[PhysicalTable], optimizer: TableOptimizer,
                   world_size: int) -> list[int]:
    """Bytes of weights and optimizer state of each rank's shards in the collection at
    ``lookup_path`` (``tables``: its tables)."""
    params = sharding.get_plan_for_module(lookup_path) or {}
    held = [0] * world_size
    for table in tables:
        p = params[table.name]
        state_per_row = bytes_per_row(table, optimizer) - table.row_bytes
        for shard in p.sharding_spec.shards if p.sharding_spec is not None else []:
            rows, cols = shard.shard_sizes
            held[shard.placement.rank()] += rows * (cols * 4 + state_per_row)
    return held


def bytes_per_row(table: PhysicalTable, optimizer: TableOptimizer) -> int:
    """A row's weights and optimizer state (row-wise Adagrad: 4 bytes)."""
    return table.row_bytes + optimizer_state_bytes(table, optimizer) // max(table.num_embeddings, 1)


def rank_values(sharding: ShardingPlan, lookup_path: str, rank: int) -> int:
    """Float32 values of the weights of ``rank``'s shards in the collection at ``lookup_path``
    (the size of its FBGEMM weights buffer when its shards form one group)."""
    params = sharding.get_plan_for_module(lookup_path) or {}
    return sum(
        math.prod(shard.shard_sizes)
        for p in params.values()
        for shard in (p.sharding_spec.shards if p.sharding_spec is not None else [])
        if shard.placement.rank() == rank
    )


def describe_plan(sharding: ShardingPlan, tables: list[PhysicalTable], optimizer: TableOptimizer, lookup_path: str,
                  on_disk: bool = False) -> list[dict]:
    """One record per table of the collection at ``lookup_path``: rows, dim, bytes, sharding
    type, ranks, placement (``on_disk``: a tiered lookup's cold tails)."""
    params = sharding.get_plan_for_module(lookup_path) or {}
    records = []
    for table in tables:
        p = params[table.name]
        ranks = sorted(set(p.ranks or []))
        records.append(
            {
                "table": table.name,
                "rows": table.num_embeddings,
                "dim": table.dim,
                "bytes": table.weight_bytes + optimizer_state_bytes(table, optimizer),
                "sharding_type": p.sharding_type,
                "ranks": ranks,
                "compute_kernel": p.compute_kernel,
                "cache_load_factor": p.cache_params.load_factor if p.cache_params is not None else None,
                "on_disk": on_disk,
                "shards": [
                    {"rank": m.placement.rank(), "offsets": list(m.shard_offsets), "sizes": list(m.shard_sizes)}
                    for m in (p.sharding_spec.shards if p.sharding_spec is not None else [])
                ],
            }
        )
    return records


def format_plan(records: list[dict], tbe_calls_per_rank: list[int], device_type: str) -> str:
    """The plan as a table for people, with the fused lookup calls each rank makes per step."""
    lines = [f"{'table':<16} {'rows':>12} {'dim':>4} {'bytes':>11} {'sharding':<15} {'ranks':<10} placement"]
    for r in records:
        ranks = ",".join(str(x) for x in r["ranks"])
        lines.append(
            f"{r['table']:<16} {r['rows']:>12,} {r['dim']:>4} {format_bytes(r['bytes']):>11} {r['sharding_type']:<15} {ranks:<10} "
            + _placement(r, device_type)
        )
    calls = ", ".join(f"rank {rank}: {n}" for rank, n in enumerate(tbe_calls_per_rank))
    lines.append(f"fused FBGEMM lookup (TBE) calls per step: {calls}")
    return "\n".join(lines)


def _placement(record: dict, device_type: str) -> str:
    if record.get("on_disk"):
        return "disk (the rank's memory-mapped cold file)"
    kernel = record["compute_kernel"]
    if kernel == EmbeddingComputeKernel.FUSED_UVM_CACHING.value:
        return f"uvm_cache (host memory, {record['cache_load_factor']:g} of the rows cached in GPU memory)"
    if kernel == EmbeddingComputeKernel.FUSED_UVM.value:
        return "host (read by the GPU through unified memory)"
    return "device" if device_type == "cuda" else "host"
