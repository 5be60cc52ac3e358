"""Multi-process training: the process group, DistributedModelParallel, and self-launch.

A run is distributed when ``torchrun`` started it (``RANK``/``WORLD_SIZE`` in the environment)
or when ``distributed.nproc`` > 1, in which case :func:`launch` starts the ranks itself through
torch's elastic agent, the same one torchrun uses. Every rank reads the same global batches and
keeps its slice of each (rank r of W takes rows [r·B/W, (r+1)·B/W)), so a W-rank run sees the
global batch of a one-process run, and the dense layers' averaged gradients and the tables'
(gradient-divided) updates equal the one-process step. The embedding tables are sharded by
torchrec's DistributedModelParallel within the plan of :mod:`recsys.embeddings.sharding_plan`; the
per-feature transforms and combiners, like the MLPs, are data-parallel.

A rank that dies ends the run within a bounded time: the elastic agent (ours or torchrun's)
sees the exit and stops the other ranks, and every collective has ``distributed.timeout_s``.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.types import ShardingEnv, ShardingPlan

from recsys.core.io import write_json
from recsys.core.logging import quiet_libraries
from recsys.core.units import format_bytes, parse_bytes
from recsys.embeddings.sharding import kernels_left_unfilled, tbe_calls
from recsys.embeddings.sharding_plan import (
    ShardingPlanError,
    bytes_per_rank,
    bytes_per_row,
    describe_plan,
    format_plan,
    plan_sharding,
    rank_values,
)
from recsys.embeddings.specs import ShardingType
from recsys.evaluation.evaluate import joined, predict_batches
from recsys.models.dlrm import DLRM
from recsys.train.config import TrainJobConfig

log = logging.getLogger(__name__)

LOOKUP_PATH = "embedding.lookup.ebc"  # where the shardable collection sits in a DLRM
PLAN_FILE = "sharding_plan.json"


@dataclasses.dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def join_world(cfg: TrainJobConfig) -> Optional[World]:
    """Join the process group torchrun (or :func:`launch`) set up; None for a one-process run."""
    if not launched_by_torchrun():
        return None
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    backend = cfg.distributed.backend or ("nccl" if cfg.device.startswith("cuda") else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=cfg.distributed.timeout_s))
    log.info("rank %d of %d (%s)", world.rank, world.size, backend)
    return world


def leave_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def agreed_run_dir(run_dir: Path, world: World) -> Path:
    """Rank 0's run directory, on every rank (each torchrun rank has its own Hydra clock)."""
    box = [str(run_dir)]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def rank_memory(cfg: TrainJobConfig, world: World) -> int:
    """Bytes each rank may use for tables: ``sharding.rank_memory``, else the RAM (or GPU
    memory) of this machine divided among its local ranks."""
    if cfg.sharding.rank_memory is not None:
        return parse_bytes(cfg.sharding.rank_memory, "sharding.rank_memory")
    if cfg.device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(cfg.device)).total_memory
    return host_memory(world)


def local_ranks(world: World) -> int:
    """Ranks on this machine (torchrun's ``LOCAL_WORLD_SIZE``; all of them when unset)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world.size))


def host_memory(world: World) -> int:
    """This machine's RAM divided among its local ranks."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // local_ranks(world)


def collection_path(part: str) -> str:
    """Where a lookup's shardable collection sits in a DLRM (``part``: its path under the lookup)."""
    return f"embedding.lookup.{part}.ebc" if part else LOOKUP_PATH


def shard_model(model: DLRM, cfg: TrainJobConfig, world: World, device: torch.device, run_dir: Path) -> DistributedModelParallel:
    """Shard ``model``'s tables (built with ``shardable=True``) by torchrec's plan; write the plan.

    A tiered lookup (``placement.ram_budget``) has two collections: its hot prefixes, planned
    so that each rank's shards keep to its ``ram_budget``, and its cold tails, always row-wise,
    within the free disk, whose shards on each rank live in the rank's memory-mapped cold file.
    The plan is saved as ``sharding_plan.json`` and logged as a table with the fused lookup
    calls each rank makes per step.
    """
    lookup = model.embedding.lookup
    kind = cfg.trainer.table_optimizer.kind
    parts = lookup.shardable_parts()
    on_disk = {name: part.cold and lookup.on_disk for name, part in parts}
    sharding = ShardingPlan({})
    for name, part in parts:
        sharding.plan.update(_plan_part(model, cfg, world, device, name, part, on_disk[name]).plan)
    sharders = []
    for name, part in parts:
        buffers = lookup.cold_file(rank_values(sharding, collection_path(name), world.rank), world.rank) if on_disk[name] else None
        sharders.append(part.sharder(buffers))
    with kernels_left_unfilled():  # init_shards writes every shard's rows
        dmp = DistributedModelParallel(model, env=ShardingEnv.from_process_group(dist.group.WORLD), device=device, plan=sharding, sharders=sharders)
    lookup.init_shards()
    calls = [0] * world.size
    dist.all_gather_object(calls, sum(tbe_calls(part.ebc) for _, part in parts))
    if world.leader:
        records = [
            record
            for name, part in parts
            for record in describe_plan(sharding, part.tables, kind, collection_path(name), on_disk=on_disk[name])
        ]
        table = format_plan(records, calls, device.type)
        write_json(run_dir / PLAN_FILE, {"world_size": world.size, "tbe_calls_per_rank": calls, "tables": records})
        (run_dir / "sharding_plan.txt").write_text(table + "\n")
        log.info("sharding plan (%s):\n%s", run_dir / PLAN_FILE, table)
    return dmp


def _plan_part(model: DLRM, cfg: TrainJobConfig, world: World, device: torch.device, name: str, part, on_disk: bool) -> ShardingPlan:
    """torchrec's plan for one of the lookup's collections (``part``, at ``name`` under it): within
    the free disk for a disk tier's cold pieces, each rank's ``ram_budget`` for a tiered lookup's
    hot pieces, ``sharding.rank_memory`` otherwise."""
    lookup = model.embedding.lookup
    kind = cfg.trainer.table_optimizer.kind
    memory = shutil.disk_usage(lookup.disk_dir).free // world.size if on_disk else rank_memory(cfg, world)
    overrides = {} if part.sharding_types else dict(cfg.sharding.overrides)

    def planned(types: list[str]) -> ShardingPlan:
        return plan_sharding(
            model,
            model.embedding.plan,
            part.sharder(),
            world.size,
            memory,
            kind,
            types,
            overrides,
            device_type=device.type,
            pg=dist.group.WORLD,
            min_partition=cfg.sharding.min_partition,
            host_memory=host_memory(world),
            tables=[(t, index) for t, (_, index, _) in zip(part.tables, part.origins)],
            memory_name="free disk of placement.disk_dir" if on_disk else "sharding.rank_memory",
        )

    tiered = len(lookup.shardable_parts()) > 1
    sharding = planned(part.sharding_types or sharding_types(cfg, tiered))
    if tiered and not part.cold:  # a tiered lookup's hot pieces
        sharding = _within_ram_budget(sharding, planned, part, lookup, collection_path(name), kind, world.size)
    return sharding


def _within_ram_budget(sharding: ShardingPlan, planned, part, lookup, path: str, kind, ranks: int) -> ShardingPlan:
    """``sharding`` of a tiered lookup's hot pieces if every rank's shards keep to its
    ``placement.ram_budget`` (less its share of the cold rows' optimizer state; over by at most a
    row of each table, as row-wise shards round), else the plan with them all row-wise (spread
    evenly, save the overridden ones); refused, naming the ranks' bytes, if that is over too.
    torchrec's planner balances the ranks' expected step time, not their memory."""
    budget = lookup.hot_bytes_per_rank(ranks)
    rounding = sum(bytes_per_row(t, kind) for t in part.tables)
    for attempt in ("planned", "row_wise"):
        held = bytes_per_rank(sharding, path, part.tables, kind, ranks)
        if max(held) <= budget + rounding:
            return sharding
        if attempt == "planned":
            log.info("sharding: the planner put %s of hot rows on the ranks (budget %s each); sharding them row-wise",
                     [format_bytes(b) for b in held], format_bytes(budget))
            sharding = planned([ShardingType.row_wise.value])
    raise ShardingPlanError(
        f"placement.ram_budget: the hot rows' shards need {', '.join(f'rank {r} {format_bytes(b)}' for r, b in enumerate(held))}, "
        f"over each rank's {format_bytes(budget)} (its ram_budget less its share of the cold rows' optimizer state) even "
        "row-wise: shard the overridden features row-wise, or raise placement.ram_budget"
    )


def sharding_types(cfg: TrainJobConfig, tiered: bool) -> list[str]:
    """The sharding types the run allows (``sharding.types``). A tiered lookup's tables are cut by
    rows into hot and cold parts, and a checkpoint holds each table whole, its rows gathered from
    both: their shards must hold whole rows, so column-wise is left out of what is allowed, and an
    override that asks for it, or a list of column-wise alone, is refused, naming the key."""
    types = [str(getattr(t, "value", t)) for t in cfg.sharding.types]
    if not tiered:
        return types
    column_wise = ShardingType.column_wise.value
    for feature, kind in cfg.sharding.overrides.items():
        if str(getattr(kind, "value", kind)) == column_wise:
            raise ShardingPlanError(
                f"sharding.overrides.{feature}: column_wise with placement.ram_budget: the tiered tables' shards must hold "
                "whole rows (use table_wise, row_wise or table_row_wise)"
            )
    whole_rows = [t for t in types if t != column_wise]
    if types and not whole_rows:
        raise ShardingPlanError(
            "sharding.types: column_wise alone with placement.ram_budget: the tiered tables' shards must hold whole rows "
            "(allow table_wise, row_wise or table_row_wise)"
        )
    return whole_rows


class ShardedTableRates:
    """The learning rate of a DistributedModelParallel's fused table optimizers, as one value (what
    :class:`~recsys.train.schedule.LRScheduler` sets each step). torchrec keeps each sharded
    table-batched lookup's rate in its fused optimizer's param groups and hands it to FBGEMM on
    ``step()``; the update itself happens in the backward, so ``step()`` changes nothing else."""

    def __init__(self, dmp: DistributedModelParallel) -> None:
        self.optimizer = dmp.fused_optimizer

    def get_learning_rate(self) -> float:
        rates = {float(group["lr"]) for group in self.optimizer.param_groups}
        if len(rates) != 1:
            raise ValueError(f"the sharded tables' fused optimizers have different learning rates: {sorted(rates)}")
        return rates.pop()

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()


def predict_sharded(model: torch.nn.Module, batches, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of every rank's slice of every batch, in the split's row order
    (each batch's rank slices are contiguous, in rank order); all ranks must call it."""
    parts = predict_batches(model, batches, device)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, parts)
    return joined([rank_parts[b] for b in range(len(parts)) for rank_parts in gathered])


def _worker(entry: Callable, cfg: TrainJobConfig, run_dir: str):
    """A rank started by :func:`launch`: its log to the console, and rank 0's to the run's
    ``train.log`` too (beside the launcher's lines), the libraries' chatter kept out."""
    rank = os.environ.get("RANK")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if rank == "0":
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(run_dir) / "train.log"))
    # force: the spawned process's root logger may already have a handler (then basicConfig
    # would add none, and every INFO line of the run, the sharding plan's included, was lost)
    logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s",
                        handlers=handlers, force=True)
    quiet_libraries()
    return entry(cfg, run_dir)


def launch(entry: Callable, cfg: TrainJobConfig, run_dir: str | Path):
    """Run ``entry(cfg, run_dir)`` on ``cfg.distributed.nproc`` local ranks (torchrun's agent,
    started from here); returns rank 0's result. A rank that fails fails the run, naming it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    nproc = cfg.distributed.nproc
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        run_id=f"recsys-{os.getpid()}",
        max_restarts=0,
        monitor_interval=0.5,
    )
    log.info("starting %d ranks", nproc)
    try:
        results = elastic_launch(config, _worker)(entry, cfg, str(run_dir))
    except ChildFailedError as error:
        failed = ", ".join(f"rank {rank} ({_failure_text(failure)})" for rank, failure in sorted(error.failures.items()))
        raise RuntimeError(f"distributed run failed: {failed}") from error
    return results[0]


def _failure_text(failure) -> str:
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message")
    if message:
        return str(message)
    return f"exit code {failure.exitcode}" + (f", signal {failure.signal_name()}" if failure.exitcode < 0 else "")
