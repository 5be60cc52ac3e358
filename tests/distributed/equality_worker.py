"""2-rank gloo run against the 1-process run of the same model, batches and seed.

Run by ``test_sharded_equality.py`` as ``python equality_worker.py OUT PAIRS PORT`` (PAIRS: a JSON
list of [embedding config, sharding type, table optimizer[, RAM budget in bytes: a disk tier, each
rank with its share]]): each rank builds, for every pair, the one-process model (direct FBGEMM lookup, the whole
global batch) and the sharded one (torchrec DMP, its half of each batch), trains both for STEPS
steps on the same multi-hot batches and records, on rank 0, the largest first-batch prediction
difference and the loss difference after the last step.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

STEPS = 20
BATCH = 16
DIM = 8
SIZES = {"C1": 40, "C2": 33, "C3": 70, "C4": 9}


def batches(steps: int):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        lengths = torch.randint(0, 4, (len(SIZES), BATCH), generator=gen)  # (F, B): multi-hot, some empty
        values = [torch.randint(0, n, (int(lengths[f].sum()),), generator=gen) for f, n in enumerate(SIZES.values())]
        dense = torch.rand(BATCH, 3, generator=gen)
        labels = (torch.rand(BATCH, generator=gen) < 0.4).float()
        yield dense, values, lengths, labels


def kjt(values, lengths, lo: int, hi: int) -> KeyedJaggedTensor:
    parts = []
    for f in range(len(SIZES)):
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths[f].cumsum(0)])
        parts.append(values[f][offsets[lo] : offsets[hi]])
    return KeyedJaggedTensor(keys=list(SIZES), values=torch.cat(parts), lengths=lengths[:, lo:hi].reshape(-1))


def compare(rank: int, world_size: int, method: dict, kind: str, optimizer: str, run_dir: Path, ram_budget: int | None = None) -> dict:
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.placement_config import PlacementConfig
    from recsys.embeddings.plan import FeatureInfo
    from recsys.embeddings.specs import TableOptimizer
    from recsys.models.config import DLRMConfig
    from recsys.models.dlrm import DLRM
    from recsys.train.config import ShardingConfig, TrainJobConfig
    from recsys.train.distributed import World, shard_model
    from recsys.train.loop import make_dense_optimizer

    # column_wise: 4-column shards (torchrec's default width, 128, would leave the dim-8 tables whole)
    cfg = TrainJobConfig(sharding=ShardingConfig(types=[kind], rank_memory="1GB", min_partition=4))
    cfg.trainer.table_optimizer.kind = TableOptimizer(optimizer)
    features = [FeatureInfo(name, n) for name, n in SIZES.items()]
    mlp = DLRMConfig(embedding_dim=DIM, bottom_mlp=[8, DIM], top_mlp=[8, 1])

    def build(shardable: bool) -> DLRM:
        torch.manual_seed(0)
        placement = None
        if ram_budget is not None:  # a disk tier: one process's budget, or each rank's share of it
            budget = ram_budget // world_size if shardable else ram_budget
            placement = PlacementConfig(ram_budget=str(budget), disk_dir=str(run_dir / f"tables_{shardable}_{rank}"))
        emb = make_embedding(method, features, DIM, cfg.trainer.table_optimizer, shardable=shardable, placement=placement)
        return DLRM(emb, num_dense=3, config=mlp)

    single, model = build(False), build(True)
    sharded = shard_model(model, cfg, World(rank, world_size, rank), torch.device("cpu"), run_dir)
    opt_single = make_dense_optimizer(single, cfg.trainer.dense_optimizer, 0.05)
    opt_sharded = make_dense_optimizer(model, cfg.trainer.dense_optimizer, 0.05)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    lo, hi = rank * BATCH // world_size, (rank + 1) * BATCH // world_size
    first_diff, losses = None, None
    for step, (dense, values, lengths, labels) in enumerate(batches(STEPS)):
        rng = torch.get_rng_state()  # both models sample alike (OptEmbed's supernet widths)
        logits = single(dense, kjt(values, lengths, 0, BATCH))
        loss = loss_fn(logits, labels)
        opt_single.zero_grad()
        (loss + single.embedding.regularization()).backward()
        opt_single.step()
        torch.set_rng_state(rng)
        local = sharded(dense[lo:hi], kjt(values, lengths, lo, hi))
        local_loss = loss_fn(local, labels[lo:hi])
        opt_sharded.zero_grad()
        (local_loss + model.embedding.regularization()).backward()
        opt_sharded.step()
        if step == 0:
            first_diff = float((local.detach() - logits.detach()[lo:hi]).abs().max())
            first_diff = torch.tensor(first_diff)
            dist.all_reduce(first_diff, op=dist.ReduceOp.MAX)
        global_loss = local_loss.detach().clone()
        dist.all_reduce(global_loss)
        losses = (float(loss), float(global_loss) / world_size)
    return {"first_batch_max_diff": float(first_diff), "loss_single": losses[0], "loss_sharded": losses[1],
            "collections": len(model.embedding.lookup.shardable_parts())}  # 2: the tables were split into hot and cold


def run(rank: int, world_size: int, port: int, out: str, pairs: list) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, kind, optimizer, *budget in pairs:
            record = compare(rank, world_size, method, kind, optimizer, Path(tmp), *budget)
            tiered = {"ram_budget": budget[0]} if budget else {}
            results.append({"method": method, "sharding_type": kind, "table_optimizer": optimizer, **tiered, **record})
    if rank == 0:
        Path(out).write_text(json.dumps(results, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    out, pairs, port = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    mp.spawn(run, args=(2, port, out, pairs), nprocs=2)
