"""Sharded runs checkpoint in the one-process format: 2 ranks → 1 rank → 2 ranks keeps every
weight and optimizer state exactly; the plan is written; the loop's real path (self-launch)."""

from __future__ import annotations

import json

import pytest
import torch

from recsys.core.checkpoint import load_checkpoint
from recsys.train.config import DistributedConfig, ShardingConfig, TrainJobConfig, TrainerConfig
from recsys.train.distributed import launch
from recsys.train.loop import train


def job(data, steps: int, nproc: int, resume=None) -> TrainJobConfig:
    cfg = TrainJobConfig(
        trainer=TrainerConfig(max_steps=steps, progress=False, tensorboard=False, resume_from=resume, threads=1, val_batches=2),
        distributed=DistributedConfig(nproc=nproc),
        sharding=ShardingConfig(types=["row_wise", "table_wise"], overrides={"C1": "row_wise"}, rank_memory="1GB"),
    )
    cfg.data.path = str(data)
    cfg.data.batch_size = 256
    cfg.model.embedding_dim = 8
    cfg.model.bottom_mlp = [16, 8]
    cfg.model.top_mlp = [16, 1]
    cfg.eval.max_batches = 2
    return cfg


def run(cfg: TrainJobConfig, run_dir):
    return launch(train, cfg, run_dir) if cfg.distributed.nproc > 1 else train(cfg, run_dir)


def assert_same_model(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_two_ranks_to_one_and_back_keep_every_weight(tiny_dataset, tmp_path):
    two = run(job(tiny_dataset, 4, 2), tmp_path / "two")
    plan = json.loads((tmp_path / "two" / "sharding_plan.json").read_text())
    assert plan["world_size"] == 2
    assert {t["table"]: t["sharding_type"] for t in plan["tables"]}["C1"] == "row_wise"
    assert (tmp_path / "two" / "sharding_plan.txt").read_text().count("TBE") == 1
    saved = load_checkpoint(two.run_dir)
    assert saved["state"]["step"] == 4 and saved["state"]["samples"] == 4 * 256

    one = run(job(tiny_dataset, 4, 1, resume=two.run_dir), tmp_path / "one")  # loads, trains no step, saves
    assert_same_model(saved["model"], load_checkpoint(one.run_dir)["model"])

    back = run(job(tiny_dataset, 4, 2, resume=one.run_dir), tmp_path / "back")
    assert_same_model(saved["model"], load_checkpoint(back.run_dir)["model"])
    assert back.eval["auc"] == pytest.approx(two.eval["auc"], abs=1e-6)
