"""A sharded run with a disk tier (``placement.ram_budget`` on 2 ranks): each table's hot prefix
is sharded as any table is, its cold tail row-wise into each rank's memory-mapped file; the run
trains as one tiered process does, reads ahead the cold rows each rank holds, counts its hit
rate over both ranks, and its checkpoint holds whole tables that resume in one process with the
tables in RAM and on 2 ranks with tiers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recsys.core.checkpoint import checkpoint_path, load_checkpoint
from recsys.data.layout import DatasetMeta
from recsys.models.build import build_model, load_weights, recipe_from_dict
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.sharding_plan import ShardingPlanError
from recsys.train.config import ShardingConfig, TrainJobConfig
from recsys.train.distributed import PLAN_FILE, sharding_types

from tests.distributed.test_sharded_checkpoint import STEPS, assert_same, job, loss_at, run

# the tiny dataset's tables: 26 x 51 rows x 36 B (dim 8, row-wise Adagrad); 20KB keeps about 20 rows
# of each in RAM in one process, 10KB a rank the same on 2 ranks
BUDGET = {1: "20KB", 2: "10KB"}


def in_ram_model(location, data):
    """A checkpoint's weights in a one-process model whose tables are all in RAM."""
    payload = load_checkpoint(location)
    recipe = recipe_from_dict(payload["recipe"])
    recipe.placement = PlacementConfig()
    model = build_model(recipe, DatasetMeta.load(data))
    load_weights(model, payload)
    return model


def in_ram_state(location, data) -> dict:
    return in_ram_model(location, data).state_dict()


def tiered(data, nproc: int, tmp_path, steps: int = STEPS, resume=None):
    cfg = job(data, nproc, steps=steps, resume=resume)
    cfg.placement = PlacementConfig(ram_budget=BUDGET[nproc], disk_dir=str(tmp_path / f"tables{nproc}"))
    return cfg


@pytest.mark.slow
def test_a_2_rank_run_with_a_disk_tier_trains_like_one_tiered_process(tiny_dataset, tmp_path):
    one = Path(run(tiered(tiny_dataset, 1, tmp_path), tmp_path / "one").run_dir)
    two = Path(run(tiered(tiny_dataset, 2, tmp_path), tmp_path / "two").run_dir)

    plan = json.loads((two / PLAN_FILE).read_text())
    cold = [t for t in plan["tables"] if t["on_disk"]]
    hot = [t for t in plan["tables"] if not t["on_disk"]]
    assert len(cold) == len(hot) == 26 and {t["sharding_type"] for t in cold} == {"row_wise"}
    assert all(t["rows"] == 51 - h["rows"] for t, h in zip(cold, hot)) and all(0 < h["rows"] < 51 for h in hot)
    assert plan["tbe_calls_per_rank"] == [len({t["sharding_type"] for t in hot}) + 1] * 2
    # each rank's hot shards (weights and Adagrad state) keep to its budget, its share of the cold
    # state aside, over by at most a row a table (row-wise shards of 17 rows: 9 and 8)
    held = [sum(s["sizes"][0] * (s["sizes"][1] * 4 + 4) for t in hot for s in t["shards"] if s["rank"] == r) for r in (0, 1)]
    cold_state = sum(t["rows"] * 4 for t in cold)
    assert all(0 < h <= 10_000 - cold_state / 2 + 26 * 36 for h in held), held
    files = sorted((tmp_path / "tables2").glob("cold_weights.rank*.f32"))
    assert [f.name for f in files] == ["cold_weights.rank0.f32", "cold_weights.rank1.f32"]
    assert sum(f.stat().st_size for f in files) == sum(t["rows"] * t["dim"] * 4 for t in cold)
    # the files hold the trained cold rows (the last checkpoint's), rank by rank in FBGEMM's order
    tables = in_ram_model(checkpoint_path(two, STEPS, sharded=True), tiny_dataset).embedding.lookup.table_weights()
    trained = torch.cat([tables[h["table"].removesuffix("_hot")][h["rows"]:].reshape(-1) for h in hot])
    in_files = torch.cat([torch.from_file(str(f), size=f.stat().st_size // 4, dtype=torch.float32) for f in files])
    assert torch.equal(in_files.sort().values, trained.sort().values)

    # same split, same initial rows, same global batches: the losses agree up to float rounding
    for step in (1, STEPS):
        assert loss_at(two, step) == pytest.approx(loss_at(one, step), abs=1e-4)
    tiers = json.loads((two / "eval.json").read_text())["memory"]["placement"]
    tiers_one = json.loads((one / "eval.json").read_text())["memory"]["placement"]
    assert tiers["hit_rate"] == pytest.approx(tiers_one["hit_rate"], abs=1e-9)  # both ranks' lookups counted
    assert 0 < tiers["hit_rate"] < 1 and tiers["disk_bytes"] == tiers_one["disk_bytes"]
    # each rank read ahead, from the next global batch, the cold rows it holds: every training
    # step but the first and those after a validation (whose lookups took the read-ahead)
    assert tiers["read_ahead_batches"]["pipelined"] >= STEPS - 3 and tiers["cold_pages_read"] > 0

    # its checkpoint holds whole tables: one process with the tables in RAM reads them, 2 tiered ranks resume them
    at4 = checkpoint_path(two, 4, sharded=True)
    saved = in_ram_state(at4, tiny_dataset)
    again = run(tiered(tiny_dataset, 2, tmp_path, steps=4, resume=at4), tmp_path / "again")
    assert_same(saved, in_ram_state(checkpoint_path(again.run_dir, 4, sharded=True), tiny_dataset))
    # and 4 steps trained alike: 1 tiered process and 2 tiered ranks differ by float rounding
    assert_same(saved, in_ram_state(checkpoint_path(one, 4), tiny_dataset), atol=1e-6)


def test_column_wise_shards_are_left_out_with_a_disk_tier_and_refused_where_asked_for():
    """With tiers, column-wise leaves the allowed types (the default list holds it); an override
    naming it, or column-wise alone, is refused naming the key."""
    cfg = TrainJobConfig(sharding=ShardingConfig(types=["table_wise", "column_wise", "row_wise"]))
    assert sharding_types(cfg, tiered=True) == ["table_wise", "row_wise"]
    assert sharding_types(cfg, tiered=False) == ["table_wise", "column_wise", "row_wise"]
    assert "column_wise" in TrainJobConfig().sharding.types and "column_wise" not in sharding_types(TrainJobConfig(), tiered=True)
    cfg.sharding.overrides = {"C3": "column_wise"}
    with pytest.raises(ShardingPlanError, match="sharding.overrides.C3: column_wise with placement.ram_budget"):
        sharding_types(cfg, tiered=True)
    with pytest.raises(ShardingPlanError, match="sharding.types: column_wise alone with placement.ram_budget"):
        sharding_types(TrainJobConfig(sharding=ShardingConfig(types=["column_wise"])), tiered=True)


@pytest.mark.slow
def test_a_tiered_one_process_checkpoint_resumes_on_2_tiered_ranks(tiny_dataset, tmp_path):
    """One tiered process's .pt (hot and cold parts of another split) into 2 tiered ranks: every
    weight and Adagrad state as saved, read whole in RAM."""
    one = Path(run(tiered(tiny_dataset, 1, tmp_path, steps=4), tmp_path / "one").run_dir)
    saved = checkpoint_path(one, 4)
    two = Path(run(tiered(tiny_dataset, 2, tmp_path, steps=4, resume=saved), tmp_path / "two").run_dir)
    assert_same(in_ram_state(saved, tiny_dataset), in_ram_state(checkpoint_path(two, 4, sharded=True), tiny_dataset))
