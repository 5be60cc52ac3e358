"""Sharding overhead: the Kaggle DLRM trained by one process against 2 gloo ranks (tables sharded
by torchrec's DistributedModelParallel) at the same global batch, in the same run.

    python benchmarks/bench_scale.py --json benchmarks/results/scale.json

Each figure is the median of ``--repeats`` timings of ``--steps`` training steps (forward,
backward with the fused table optimizer, dense optimizer step) after warm-up steps, with min
and max. Batches are single-hot ids drawn uniformly from each feature's rows (Kaggle
cardinalities times ``--cardinality-scale``), the same global batches for both runs. On a
2-core machine 2 ranks cannot be faster than one: the ratio measures the sharding overhead
(goal of issue 7: sharded >= 0.8x single).

Not measured here yet: the disk tier and GPU placements of issue 7 (not built).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, median, save_result  # noqa: E402


@dataclasses.dataclass
class ScaleResult:
    single_samples_per_s: float
    single_min_max: list
    sharded_samples_per_s: float
    sharded_min_max: list
    sharded_world_size: int
    sharding_types: list
    ratio: float
    goal_sharded_at_least_0_8x: bool
    table_rows: int
    cardinality_scale: float
    batch_size: int
    steps: int
    repeats: int
    threads_per_rank: int
    command: str


def build(shardable: bool, scale: float):
    from recsys.data.synth_model import KAGGLE_CARDINALITIES
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.plan import FeatureInfo
    from recsys.embeddings.specs import TableOptimizerConfig
    from recsys.models.config import DLRMConfig
    from recsys.models.dlrm import DLRM

    features = [FeatureInfo(f"C{i + 1}", max(4, int(n * scale)) + 1) for i, n in enumerate(KAGGLE_CARDINALITIES)]
    config = DLRMConfig(embedding_dim=16, bottom_mlp=[512, 256, 64, 16], top_mlp=[512, 256, 1])
    torch.manual_seed(0)
    emb = make_embedding({"method": "full"}, features, 16, TableOptimizerConfig(), shardable=shardable)
    return DLRM(emb, num_dense=13, config=config), features


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

    def step(i: int) -> None:
        dense, kjt, labels = data[i % len(data)]
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
    args = parser.parse_args()

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
    result = ScaleResult(
        single_samples_per_s=single_rate,
        single_min_max=single_range,
        sharded_samples_per_s=sharded_rate,
        sharded_min_max=sharded_range,
        sharded_world_size=2,
        sharding_types=list(args.types),
        ratio=sharded_rate / single_rate,
        goal_sharded_at_least_0_8x=sharded_rate >= 0.8 * single_rate,
        table_rows=sum(f.num_embeddings for f in features),
        cardinality_scale=args.cardinality_scale,
        batch_size=args.batch,
        steps=args.steps,
        repeats=args.repeats,
        threads_per_rank=args.threads,
        command=" ".join(["python", *sys.argv]),
    )
    save_result(args.json, result)
    print(
        format_table(
            [
                ("single process", single_rate, f"samples/s (min {single_range[0]:,.0f}, max {single_range[1]:,.0f})"),
                ("2 gloo ranks, sharded", sharded_rate, f"samples/s (min {sharded_range[0]:,.0f}, max {sharded_range[1]:,.0f})"),
                ("sharded / single", result.ratio, "goal >= 0.8"),
                ("table rows", result.table_rows, f"Kaggle x {args.cardinality_scale}"),
            ],
            title=f"Kaggle DLRM, global batch {args.batch}, {args.steps} steps x {args.repeats} repeats",
        )
    )


if __name__ == "__main__":
    main()
