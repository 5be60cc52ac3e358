"""Sharding overhead: the Kaggle DLRM trained by one process against 2 gloo ranks (tables sharded
by torchrec's DistributedModelParallel) at the same global batch, in the same run.

    python benchmarks/bench_scale.py --json benchmarks/results/scale.json

Each figure is the median of ``--repeats`` timings of ``--steps`` training steps (forward,
backward with the fused table optimizer, dense optimizer step) after warm-up steps, with min
and max. Batches are single-hot ids drawn uniformly from each feature's rows (Kaggle
cardinalities times ``--cardinality-scale``), the same global batches for both runs. On a
2-core machine 2 ranks cannot be faster than one: the ratio measures the sharding overhead
(goal of issue 7: sharded >= 0.8x single).

``disk_tier``: the issue's out-of-RAM run. A DLRM whose tables have the ``--disk-profile``
cardinalities (the 1TB logs by default) capped at ``--disk-cap`` rows (MLPerf's 40M) and
``--disk-dim`` wide (64: at MLPerf's 128 the files need 84 GB, more than this machine's free disk),
split by ``placement.ram_budget`` (``--disk-ram-share`` of the tables' bytes): hot prefixes in RAM,
cold tails in memory-mapped files (recsys/embeddings/placement.py). The default share, 0.35, is a
14.8 GB budget, about the issue's own example (``placement.ram_budget=16GB``) on this 25 GB machine,
with peak RSS under the issue's 20 GB; each step then reads about 260 cold pages from disk against
680 at 0.1. The disk's own random-read rate is probed on the cold file before and after the timed
steps (``disk_random_reads_per_s``; this cloud disk gave 1K to 30K random 4 KB reads a second
within one hour, fio and this probe), and ``disk_bound_samples_per_s`` is the rate of a step that
did nothing but read its cold pages at that rate: a bound the disk sets. Ids are drawn each step
from the profile's Zipf-skewed frequency ranks (recsys.data.synth_model). Against it, in the same run, the
same model with every table scaled to ``--in-ram-scale`` of its rows, all in RAM.
``peak_rss_bytes`` is the process's peak resident set after the disk-tier run (mapped file pages
that were touched count in it). ``--sections disk_tier`` runs only that section.

``gpu`` (needs CUDA; ``scripts/gpu_check.sh`` runs it): the Kaggle DLRM on one GPU with every
table in GPU memory, against the tables in host memory behind FBGEMM's GPU cache (``uvm_cache``
at ``--cache-load-factor``, LRU and LFU) and in host memory read through unified memory
(``host``), same batches, in the same run. Ids are drawn fresh on the GPU each step, Zipf-skewed
frequency ranks of each feature (exponent 1), so the cache sees a stream, not a few batches
again; its hit rate (share of each batch's distinct rows found in the cache, FBGEMM's count,
LRU only) is taken over the timed steps after ``--gpu-warmup`` steps. The placements are built side
by side and timed round-robin, at each of ``--gpu-batches``: at the Kaggle batch of 2048 a step is
bound by kernel launches, not by the lookups, so a large batch shows what the tiers cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ZipfBatches, format_table, median, save_result  # noqa: E402


@dataclasses.dataclass
class ScaleResult:
    batch_size: int
    steps: int
    repeats: int
    command: str
    single_samples_per_s: Optional[float] = None
    single_min_max: Optional[list] = None
    sharded_samples_per_s: Optional[float] = None
    sharded_min_max: Optional[list] = None
    sharded_world_size: Optional[int] = None
    sharding_types: Optional[list] = None
    ratio: Optional[float] = None
    goal_sharded_at_least_0_8x: Optional[bool] = None
    table_rows: Optional[int] = None
    cardinality_scale: Optional[float] = None
    threads_per_rank: Optional[int] = None
    disk_tier: Optional[dict] = None
    sharded_disk_tier: Optional[dict] = None
    gpu: Optional[dict] = None


def kaggle_dlrm_config():
    from recsys.models.config import DLRMConfig

    return DLRMConfig(embedding_dim=16, bottom_mlp=[512, 256, 64, 16], top_mlp=[512, 256, 1])


def build(shardable: bool, scale: float, embedding: bool = True):
    """The Kaggle DLRM on the CPU (None without ``embedding``) and its features."""
    from recsys.data.synth_model import KAGGLE_CARDINALITIES
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.plan import FeatureInfo
    from recsys.embeddings.specs import TableOptimizerConfig
    from recsys.models.dlrm import DLRM

    features = [FeatureInfo(f"C{i + 1}", max(4, int(n * scale)) + 1) for i, n in enumerate(KAGGLE_CARDINALITIES)]
    if not embedding:
        return None, features
    torch.manual_seed(0)
    emb = make_embedding({"method": "full"}, features, 16, TableOptimizerConfig(), shardable=shardable)
    return DLRM(emb, num_dense=13, config=kaggle_dlrm_config()), features


class ProfileBatches:
    """Training batches of a synthetic-data profile's feature distributions (its cardinalities,
    cap and Zipf skew, :mod:`recsys.data.synth_model`), drawn as they are asked for; the planted
    labels do not matter to a speed figure, so they are 25% positives at random."""

    def __init__(self, space, batch: int, seed: int = 0, rows: slice = slice(None)) -> None:
        import numpy as np

        self.space, self.batch, self.rows = space, batch, rows  # rows: a rank's slice of each global batch
        self.rng = np.random.default_rng(seed)
        self.keys = [f"C{i + 1}" for i in range(len(space.cardinalities))]

    def __len__(self) -> int:
        return 1 << 62  # a stream: every index is a new batch

    def __getitem__(self, _: int):
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        dense, sparse = self.space.sample(self.rng, self.batch)  # (B, 13) float32, (B, F) int32 ranks
        labels = torch.from_numpy(self.rng.random(self.batch) < 0.25).float()

        def kjt(sparse) -> KeyedJaggedTensor:
            ids = torch.from_numpy(sparse.T.astype("int64")).reshape(-1)  # feature-major, as a KJT lays them out
            return KeyedJaggedTensor(keys=self.keys, values=ids, lengths=torch.ones(ids.numel(), dtype=torch.int32),
                                     stride=len(sparse), length_per_key=[len(sparse)] * len(self.keys))

        mine = (torch.from_numpy(dense[self.rows]), kjt(sparse[self.rows]), labels[self.rows])
        return mine if self.rows == slice(None) else (*mine, kjt(sparse))  # a rank's: and the global batch's ids


def profile_features(args, scale: float):
    """The disk_tier model's features: the ``--disk-profile`` cardinalities at ``--disk-cap``,
    times ``scale``, and the feature space that draws its ids."""
    from recsys.data.config import SynthConfig
    from recsys.data.synth import feature_space
    from recsys.embeddings.plan import FeatureInfo

    space = feature_space(SynthConfig(output="(no dataset: ids drawn in memory)", profile=args.disk_profile, cardinality_scale=scale,
                                      max_cardinality=args.disk_cap))
    return [FeatureInfo(f"C{i + 1}", n) for i, n in enumerate(space.cardinalities)], space


def disk_random_reads_per_s(path: Path, pages: int = 2000, seed: int = 0) -> float:
    """Random page reads a second that ``path`` serves now, read the way the disk tier reads
    (:class:`~recsys.embeddings.disk_prefetch.RowPrefetcher`: buffered reads from its thread pool),
    ``pages`` distinct pages drawn at random from a file many times the page cache (so nearly
    all go to the disk). The disk's rate sets a bound on the disk tier whatever the software does."""
    from recsys.embeddings.disk_prefetch import PAGE_BYTES, RowPrefetcher

    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(path.stat().st_size // PAGE_BYTES, generator=gen)[:pages]
    reader = RowPrefetcher(path, [0], [PAGE_BYTES])
    try:
        start = time.perf_counter()
        read = reader(torch.zeros_like(rows), rows)
        return read / (time.perf_counter() - start)
    finally:
        reader.close()


def disk_tier(args) -> dict:
    """Train steps with cold table tails on disk against the same model with its tables scaled
    down to fit in RAM (``--in-ram-scale`` of the rows; 1 = the same tables)."""
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.placement import COLD_FILE
    from recsys.embeddings.placement_config import PlacementConfig
    from recsys.embeddings.specs import TableOptimizerConfig
    from recsys.models.config import DLRMConfig
    from recsys.models.dlrm import DLRM

    dim = args.disk_dim
    config = DLRMConfig(embedding_dim=dim, bottom_mlp=[256, dim], top_mlp=[256, 1])
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    features, space = profile_features(args, args.disk_scale)
    table_bytes = sum(f.num_embeddings for f in features) * (dim * 4 + 4)  # weights + row-wise Adagrad
    out = {"profile": args.disk_profile, "cap": args.disk_cap, "scale": args.disk_scale, "dim": dim,
           "table_rows": sum(f.num_embeddings for f in features), "table_bytes": table_bytes, "ram_bytes": ram,
           "tables_over_ram": table_bytes / ram}
    if args.disk_dir is not None:
        Path(args.disk_dir).mkdir(parents=True, exist_ok=True)  # as placement.disk_dir would be
    with tempfile.TemporaryDirectory(dir=args.disk_dir) as tmp:
        placement = PlacementConfig(ram_budget=str(int(table_bytes * args.disk_ram_share)), disk_dir=tmp)
        torch.manual_seed(0)
        start = time.perf_counter()
        emb = make_embedding({"method": "full"}, features, dim, TableOptimizerConfig(), placement=placement)
        out["build_seconds"] = time.perf_counter() - start
        out["rss_after_build_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        model = DLRM(emb, num_dense=13, config=config)
        cold_file = emb.lookup.disk_dir / COLD_FILE
        probes = [disk_random_reads_per_s(cold_file)]
        times = timed_steps(model, model, ProfileBatches(space, args.batch), args.steps, args.repeats, args.warmup, lambda: None)
        probes.append(disk_random_reads_per_s(cold_file, seed=1))
        tiers = emb.tiers()
        steps = args.warmup + args.steps * args.repeats
        pages_per_step = tiers["cold_pages_read"] / steps
        out.update(tier_ram_bytes=tiers["ram_bytes"], disk_bytes=tiers["disk_bytes"], hit_rate=tiers["hit_rate"],
                   read_ahead_batches=tiers["read_ahead_batches"], read_wait_per_step_s=tiers["read_wait_seconds"] / steps,
                   cold_pages_per_step=pages_per_step, disk_random_reads_per_s=probes,
                   disk_bound_samples_per_s=args.batch * median(probes) / max(pages_per_step, 1e-9))
        out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        del model, emb
    small, small_space = profile_features(args, args.disk_scale * args.in_ram_scale)
    torch.manual_seed(0)
    model = DLRM(make_embedding({"method": "full"}, small, dim, TableOptimizerConfig()), num_dense=13, config=config)
    in_ram = timed_steps(model, model, ProfileBatches(small_space, args.batch), args.steps, args.repeats, args.warmup, lambda: None)
    samples = args.steps * args.batch
    out.update(
        threads=torch.get_num_threads(),
        samples_per_s=samples / median(times),
        min_max=[samples / max(times), samples / min(times)],
        in_ram_table_bytes=sum(f.num_embeddings for f in small) * (dim * 4 + 4),
        in_ram_samples_per_s=samples / median(in_ram),
        in_ram_min_max=[samples / max(in_ram), samples / min(in_ram)],
        ram_share=args.disk_ram_share,
        in_ram_scale=args.in_ram_scale,
    )
    out["ratio"] = out["samples_per_s"] / out["in_ram_samples_per_s"]
    out["goal_at_least_0_5x_in_ram"] = out["ratio"] >= 0.5
    out["goal_peak_rss_under_20gb"] = out["peak_rss_bytes"] < 20e9
    out["goal_tables_at_least_1_5x_ram"] = out["tables_over_ram"] >= 1.5
    return out


def sharded_disk_tier_worker(rank: int, world: int, port: int, args, folder: str, out: str) -> None:
    """One rank of ``sharded_disk_tier``: the disk_tier model on ``world`` gloo ranks, its RAM
    budget split among them (the cold tails row-wise in each rank's file in ``folder``), then
    the in-RAM comparison model sharded alike; every rank's figures to ``out`` (rank 0)."""
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.placement_config import PlacementConfig
    from recsys.embeddings.specs import TableOptimizerConfig
    from recsys.models.config import DLRMConfig
    from recsys.models.dlrm import DLRM
    from recsys.train.config import ShardingConfig, TrainJobConfig
    from recsys.train.distributed import World, shard_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.disk_threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    dim, cfg = args.disk_dim, TrainJobConfig(sharding=ShardingConfig(types=args.types))
    config = DLRMConfig(embedding_dim=dim, bottom_mlp=[256, dim], top_mlp=[256, 1])
    rows = slice(rank * args.batch // world, (rank + 1) * args.batch // world)
    mine = {}

    def trained(features, space, placement=None, read_ahead=(True,)) -> dict[bool, list[float]]:
        """Step times by ``placement.read_ahead``, the settings' repeats interleaved."""
        torch.manual_seed(0)
        start = time.perf_counter()
        emb = make_embedding({"method": "full"}, features, dim, TableOptimizerConfig(), shardable=True, placement=placement)
        model = DLRM(emb, num_dense=13, config=config)
        with tempfile.TemporaryDirectory() as run_dir:
            net = shard_model(model, cfg, World(rank, world, rank), torch.device("cpu"), Path(run_dir))
        dist.barrier()
        mine.setdefault("build_seconds", time.perf_counter() - start)
        data = ProfileBatches(space, args.batch, rows=rows)  # every rank draws the same global batches
        times: dict[bool, list[float]] = {mode: [] for mode in read_ahead}
        for repeat in range(args.repeats):
            for mode in read_ahead:
                if placement is not None:
                    emb.lookup.read_ahead = mode
                times[mode] += timed_steps(net, model, data, args.steps, 1, args.warmup if repeat == 0 else 0, dist.barrier)
        mine.setdefault("tiers", emb.tiers())
        return times

    features, space = profile_features(args, args.disk_scale)
    table_bytes = sum(f.num_embeddings for f in features) * (dim * 4 + 4)
    budget = int(table_bytes * args.disk_ram_share / world)
    disk = trained(features, space, PlacementConfig(ram_budget=str(budget), disk_dir=folder), read_ahead=(True, False))
    mine["times"], mine["no_read_ahead_times"] = disk[True], disk[False]
    gc.collect()  # the disk-tier model's tables (torchrec's modules hold cycles), before the next model's
    mine["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Rss"))
    mine["rss_after_steps"] = {k: int(v.split()[0]) * 1024 for k, v in status.items()}  # RssAnon, RssFile (mapped cold pages), RssShmem
    mine["cold_file_bytes"] = sum(f.stat().st_size for f in Path(folder).glob(f"*rank{rank}*"))
    for f in Path(folder).glob(f"*rank{rank}*"):  # the in-RAM model needs the page cache no longer
        f.unlink()
    small, small_space = profile_features(args, args.disk_scale * args.in_ram_scale)
    mine["in_ram_times"] = trained(small, small_space)[True]
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        torch.save({"ranks": gathered, "table_bytes": table_bytes, "budget_per_rank": budget,
                    "table_rows": sum(f.num_embeddings for f in features),
                    "in_ram_table_bytes": sum(f.num_embeddings for f in small) * (dim * 4 + 4)}, out)
    dist.destroy_process_group()


def sharded_disk_tier(args) -> dict:
    """The disk_tier model on 2 gloo ranks, with and without read-ahead (repeats interleaved),
    against the in-RAM comparison model on 2 ranks."""
    world = 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if args.disk_dir is not None:
        Path(args.disk_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.disk_dir) as folder:
        out = os.path.join(folder, "result.pt")
        mp.spawn(sharded_disk_tier_worker, args=(world, port, args, folder, out), nprocs=world)
        got = torch.load(out, weights_only=False)
    ranks = got.pop("ranks")
    samples = args.steps * args.batch
    # a step ends when its slowest rank does (the timed steps end on a barrier): rank 0's times are the run's
    times, in_ram, no_read_ahead = ranks[0]["times"], ranks[0]["in_ram_times"], ranks[0]["no_read_ahead_times"]
    tiers = ranks[0]["tiers"]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    result = dict(
        got, world_size=world, ram_bytes=ram, tables_over_ram=got["table_bytes"] / ram, dim=args.disk_dim, threads_per_rank=args.disk_threads,
        build_seconds=ranks[0]["build_seconds"], hit_rate=tiers["hit_rate"], tier_ram_bytes=tiers["ram_bytes"], disk_bytes=tiers["disk_bytes"],
        read_ahead_batches_per_rank=[r["tiers"]["read_ahead_batches"] for r in ranks],
        read_wait_per_step_s_per_rank=[r["tiers"]["read_wait_seconds"] / (args.warmup + args.steps * args.repeats) for r in ranks],
        cold_pages_per_step_per_rank=[r["tiers"]["cold_pages_read"] / (args.warmup + args.steps * args.repeats) for r in ranks],
        cold_file_bytes=[r["cold_file_bytes"] for r in ranks], peak_rss_bytes_per_rank=[r["peak_rss_bytes"] for r in ranks],
        rss_after_steps_per_rank=[r["rss_after_steps"] for r in ranks],
        samples_per_s=samples / median(times), min_max=[samples / max(times), samples / min(times)],
        in_ram_samples_per_s=samples / median(in_ram), in_ram_min_max=[samples / max(in_ram), samples / min(in_ram)],
        no_read_ahead_samples_per_s=samples / median(no_read_ahead),
        no_read_ahead_min_max=[samples / max(no_read_ahead), samples / min(no_read_ahead)],
        ram_share=args.disk_ram_share, in_ram_scale=args.in_ram_scale, types=list(args.types),
    )
    result["peak_rss_bytes"] = sum(result["peak_rss_bytes_per_rank"])  # the ranks share the machine
    result["ratio"] = result["samples_per_s"] / result["in_ram_samples_per_s"]
    result["goal_at_least_0_5x_in_ram"] = result["ratio"] >= 0.5
    result["goal_peak_rss_under_20gb"] = result["peak_rss_bytes"] < 20e9
    return result


GPU_PLACEMENTS = [("device", "lru"), ("uvm_cache", "lru"), ("uvm_cache", "lfu"), ("host", "lru")]


def gpu(args) -> dict:
    """Kaggle DLRM steps on one GPU for each placement of the tables: all placements built side by
    side, each warmed up on its own batch stream (the same for all), then timed round-robin so
    that clock and allocator drift falls on all alike."""
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.placement_config import PlacementConfig
    from recsys.embeddings.specs import TableOptimizerConfig
    from recsys.models.dlrm import DLRM
    from recsys.train.loop import make_dense_optimizer

    device = torch.device("cuda")
    _, features = build(False, args.cardinality_scale, embedding=False)
    out = {"device_name": torch.cuda.get_device_name(), "cache_load_factor": args.cache_load_factor,
           "table_rows": sum(f.num_embeddings for f in features), "steps": args.steps, "repeats": args.repeats,
           "warmup_steps": args.gpu_warmup, "batches": []}
    runs = []
    for tier, algorithm in GPU_PLACEMENTS:
        placement = PlacementConfig(hot_tier=tier, cache_load_factor=args.cache_load_factor, cache_algorithm=algorithm)
        torch.manual_seed(0)
        emb = make_embedding({"method": "full"}, features, 16, TableOptimizerConfig(), device=device, placement=placement)
        model = DLRM(emb, num_dense=13, config=kaggle_dlrm_config()).to(device)
        runs.append((tier, algorithm, emb, model, make_dense_optimizer(model, "adagrad", 0.01)))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for batch in args.gpu_batches:
        streams = [ZipfBatches(features, batch, device) for _ in runs]

        def steps(run: int, count: int) -> float:
            _, _, _, model, opt = runs[run]
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(count):
                dense, kjt, labels = streams[run][0]
                loss = loss_fn(model(dense, kjt), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            torch.cuda.synchronize()
            return time.perf_counter() - start

        for run, (tier, algorithm, emb, _, _) in enumerate(runs):
            steps(run, args.gpu_warmup)  # fills the cache
            if tier == "uvm_cache" and algorithm == "lru":
                emb.lookup.tbe.reset_uvm_cache_stats()
        times = [[] for _ in runs]
        for _ in range(args.repeats):
            for run in range(len(runs)):
                times[run].append(steps(run, args.steps))
        samples = args.steps * batch
        placements = []
        for (tier, algorithm, emb, _, _), seconds in zip(runs, times):
            tiers = emb.tiers() or {}
            placements.append({
                "tier": tier,
                "cache_algorithm": algorithm if tier == "uvm_cache" else None,
                "samples_per_s": samples / median(seconds),
                "min_max": [samples / max(seconds), samples / min(seconds)],
                "hit_rate": tiers.get("hit_rate"),
                "device_cache_bytes": tiers.get("device_cache_bytes"),
            })
        for p in placements:
            p["vs_device"] = p["samples_per_s"] / placements[0]["samples_per_s"]
        out["batches"].append({"batch_size": batch, "placements": placements})
    out["peak_gpu_bytes_all_placements"] = torch.cuda.max_memory_allocated()
    return out


def batches(features, batch: int, count: int, lo: int, hi: int):
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        ids = torch.stack([torch.randint(0, f.num_embeddings, (batch,), generator=gen) for f in features])  # (F, B)
        dense = torch.rand(batch, 13, generator=gen)
        labels = (torch.rand(batch, generator=gen) < 0.25).float()
        local = ids[:, lo:hi]
        kjt = KeyedJaggedTensor(
            keys=[f.name for f in features],
            values=local.reshape(-1),
            lengths=torch.ones(local.numel(), dtype=torch.int32),
            stride=hi - lo,
        )
        out.append((dense[lo:hi], kjt, labels[lo:hi]))
    return out


def timed_steps(net, model, data, steps: int, repeats: int, warmup: int, sync) -> list[float]:
    from recsys.train.loop import make_dense_optimizer

    opt = make_dense_optimizer(model, "adagrad", 0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    upcoming = data[0]

    def step(i: int) -> None:
        nonlocal upcoming
        (dense, kjt, labels, *_), upcoming = upcoming, data[(i + 1) % len(data)]
        # as the train loop does: disk tables read the next batch's rows meanwhile (a sharded disk
        # tier: the rows each rank holds, of the next global batch)
        model.embedding.prefetch(upcoming[3] if model.embedding.prefetches_global_batch else upcoming[1])
        loss = loss_fn(net(dense, kjt), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    times = []
    for r in range(repeats):
        sync()
        start = time.perf_counter()
        for i in range(steps):
            step(warmup + r * steps + i)
        sync()
        times.append(time.perf_counter() - start)
    return times


def sharded_worker(rank: int, world: int, port: int, args, out: str) -> None:
    from recsys.train.config import ShardingConfig, TrainJobConfig
    from recsys.train.distributed import World, shard_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, features = build(True, args.cardinality_scale)
    cfg = TrainJobConfig(sharding=ShardingConfig(types=args.types))
    with tempfile.TemporaryDirectory() as tmp:
        net = shard_model(model, cfg, World(rank, world, rank), torch.device("cpu"), Path(tmp))
    lo, hi = rank * args.batch // world, (rank + 1) * args.batch // world
    data = batches(features, args.batch, 8, lo, hi)
    times = timed_steps(net, model, data, args.steps, args.repeats, args.warmup, dist.barrier)
    if rank == 0:
        torch.save(times, out)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="benchmarks/results/scale.json")
    parser.add_argument("--cardinality-scale", type=float, default=1.0, help="Kaggle cardinalities times this")
    parser.add_argument("--batch", type=int, default=2048, help="global batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--types", nargs="+", default=["table_wise", "row_wise"], help="sharding types the planner may use")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (the single run gets 2x)")
    parser.add_argument("--sections", nargs="+", default=["disk_tier", "sharding"], choices=["disk_tier", "sharded_disk_tier", "sharding", "gpu"])
    parser.add_argument("--cache-load-factor", type=float, default=0.2, help="gpu: uvm_cache rows as a share of all rows")
    parser.add_argument("--gpu-warmup", type=int, default=100, help="gpu: untimed steps that fill the cache first")
    parser.add_argument("--gpu-batches", type=int, nargs="+", default=[2048, 65536], help="gpu: batch sizes to time")
    parser.add_argument("--disk-profile", default="terabyte", choices=["terabyte", "kaggle"], help="disk_tier: synthetic-data profile of the tables and ids")
    parser.add_argument("--disk-cap", type=int, default=40_000_000, help="disk_tier: rows per table at most (MLPerf's 40M)")
    parser.add_argument("--disk-scale", type=float, default=1.0, help="disk_tier: the profile's cardinalities times this")
    parser.add_argument("--disk-dim", type=int, default=64, help="disk_tier: dim (MLPerf's 128 needs 84 GB of files)")
    parser.add_argument("--in-ram-scale", type=float, default=0.1, help="disk_tier: rows of the all-in-RAM comparison model, as a share")
    parser.add_argument("--disk-ram-share", type=float, default=0.35, help="placement.ram_budget as a share of the table bytes")
    parser.add_argument(
        "--disk-threads", type=int, default=1,
        help="torch threads of the disk_tier section (on the shared 2-core box, 2 threads made FBGEMM's CPU backward vary 0.01-1.2 s a call)",
    )
    parser.add_argument("--disk-dir", default=None, help="folder of the cold tables' files (default: a temporary folder)")
    args = parser.parse_args()

    result = ScaleResult(batch_size=args.batch, steps=args.steps, repeats=args.repeats, command=" ".join(["python", *sys.argv]))
    rows = []
    if "disk_tier" in args.sections:  # first: its peak RSS is the process's
        torch.set_num_threads(args.disk_threads)
        tier = result.disk_tier = disk_tier(args)
        rows += [
            ("disk tier", tier["samples_per_s"], f"samples/s (min {tier['min_max'][0]:,.0f}, max {tier['min_max'][1]:,.0f})"),
            (f"tables x {tier['in_ram_scale']:g} in RAM", tier["in_ram_samples_per_s"], f"samples/s (min {tier['in_ram_min_max'][0]:,.0f}, max {tier['in_ram_min_max'][1]:,.0f})"),
            ("disk / RAM", tier["ratio"], "goal >= 0.5"),
            ("hot-tier hit rate", tier["hit_rate"], f"hot rows: {tier['ram_share']:.0%} of the table bytes"),
            ("wait on disk reads", tier["read_wait_per_step_s"], f"s a step; batches read ahead during the step before: {tier['read_ahead_batches']}"),
            ("cold pages a step", tier["cold_pages_per_step"], "4 KB pages of the cold file each step reads (cached or not)"),
            ("disk random reads/s", median(tier["disk_random_reads_per_s"]), f"pages/s before and after the steps: "
             f"{', '.join(f'{x:,.0f}' for x in tier['disk_random_reads_per_s'])}"),
            ("disk-bound samples/s", tier["disk_bound_samples_per_s"], "if a step only read its cold pages at that rate"),
            ("table bytes", tier["table_bytes"], f"RAM tier {tier['tier_ram_bytes']:,}, disk {tier['disk_bytes']:,}"),
            ("tables / RAM", tier["tables_over_ram"], "goal >= 1.5"),
            ("peak RSS bytes", tier["peak_rss_bytes"], f"goal < 20 GB; machine RAM {tier['ram_bytes']:,}"),
        ]
    if "sharded_disk_tier" in args.sections:
        tier = result.sharded_disk_tier = sharded_disk_tier(args)
        rows += [
            ("2 ranks, disk tier", tier["samples_per_s"], f"samples/s (min {tier['min_max'][0]:,.0f}, max {tier['min_max'][1]:,.0f})"),
            (f"2 ranks, tables x {tier['in_ram_scale']:g} in RAM", tier["in_ram_samples_per_s"],
             f"samples/s (min {tier['in_ram_min_max'][0]:,.0f}, max {tier['in_ram_min_max'][1]:,.0f})"),
            ("2 ranks, disk tier, no read-ahead", tier["no_read_ahead_samples_per_s"],
             f"samples/s (min {tier['no_read_ahead_min_max'][0]:,.0f}, max {tier['no_read_ahead_min_max'][1]:,.0f}); placement.read_ahead=false"),
            ("2 ranks: disk / RAM", tier["ratio"], "goal >= 0.5"),
            ("2 ranks: hot-tier hit rate", tier["hit_rate"], f"RAM tier {tier['tier_ram_bytes']:,} B, disk {tier['disk_bytes']:,} B"),
            ("2 ranks: tables / RAM", tier["tables_over_ram"], f"table bytes {tier['table_bytes']:,}"),
            ("2 ranks: peak RSS bytes", tier["peak_rss_bytes"], f"sum of the ranks' peaks {tier['peak_rss_bytes_per_rank']}; goal < 20 GB"),
        ]
    if "sharding" in args.sections:
        rows += sharding(args, result)
    if "gpu" in args.sections:
        result.gpu = gpu(args)
        for entry in result.gpu["batches"]:
            for p in entry["placements"]:
                name = p["tier"] + (f" ({p['cache_algorithm']}, {args.cache_load_factor:g} of rows)" if p["cache_algorithm"] else "")
                hit = "" if p["hit_rate"] is None else f", hit rate {p['hit_rate']:.4f}"
                rows.append((f"GPU batch {entry['batch_size']}: {name}", p["samples_per_s"],
                             f"samples/s (min {p['min_max'][0]:,.0f}, max {p['min_max'][1]:,.0f}), {p['vs_device']:.2f}x device{hit}"))
    save_result(args.json, result)
    print(format_table(rows, title=f"global batch {args.batch}, {args.steps} steps x {args.repeats} repeats"))


def sharding(args, result: ScaleResult) -> list:
    """1 process against 2 gloo ranks at the same global batch; fills ``result``'s sharding fields."""
    torch.set_num_threads(2 * args.threads)
    model, features = build(False, args.cardinality_scale)
    data = batches(features, args.batch, 8, 0, args.batch)
    single = timed_steps(model, model, data, args.steps, args.repeats, args.warmup, lambda: None)
    del model, data

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.pt")
        mp.spawn(sharded_worker, args=(2, port, args, out), nprocs=2)
        sharded = torch.load(out)

    samples = args.steps * args.batch
    rates = lambda times: (samples / median(times), [samples / max(times), samples / min(times)])  # noqa: E731
    single_rate, single_range = rates(single)
    sharded_rate, sharded_range = rates(sharded)
    result.single_samples_per_s, result.single_min_max = single_rate, single_range
    result.sharded_samples_per_s, result.sharded_min_max = sharded_rate, sharded_range
    result.sharded_world_size, result.sharding_types = 2, list(args.types)
    result.ratio = sharded_rate / single_rate
    result.goal_sharded_at_least_0_8x = sharded_rate >= 0.8 * single_rate
    result.table_rows = sum(f.num_embeddings for f in features)
    result.cardinality_scale, result.threads_per_rank = args.cardinality_scale, args.threads
    return [
        ("single process", single_rate, f"samples/s (min {single_range[0]:,.0f}, max {single_range[1]:,.0f})"),
        ("2 gloo ranks, sharded", sharded_rate, f"samples/s (min {sharded_range[0]:,.0f}, max {sharded_range[1]:,.0f})"),
        ("sharded / single", result.ratio, "goal >= 0.8"),
        ("table rows", result.table_rows, f"Kaggle x {args.cardinality_scale}"),
    ]


if __name__ == "__main__":
    main()
