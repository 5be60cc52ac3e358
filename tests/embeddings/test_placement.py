"""Tiered placement: hot prefixes in RAM, cold tails in memory-mapped files, same results as RAM."""

import dataclasses

import pytest
import torch
from hydra import compose, initialize_config_dir
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.core.units import format_bytes
from recsys.cli.common import CONF_DIR
from recsys.cli.train import to_job_config
from recsys.data.config import DataConfig
from recsys.embeddings import row_ranges
from recsys.embeddings.build import make_embedding
from recsys.embeddings.placement import TieredLookup, hot_rows, hot_split
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
from recsys.embeddings.tables import PhysicalTable
from recsys.evaluation.offline import EvalJobConfig, evaluate_checkpoint
from recsys.models.config import DLRMConfig
from recsys.train.config import TrainerConfig, TrainJobConfig
from recsys.train.loop import train

FEATURES = [FeatureInfo("C1", 1000), FeatureInfo("C2", 60), FeatureInfo("C3", 300)]


def batches(steps: int, batch: int = 16):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        lengths = torch.randint(0, 4, (len(FEATURES) * batch,), generator=gen)
        per_feature = lengths.view(len(FEATURES), batch).sum(dim=1)
        # Zipf-like ranks: small ids (hot rows) are the most frequent
        values = [
            (torch.rand(int(n), generator=gen) ** 3 * f.num_embeddings).long() for f, n in zip(FEATURES, per_feature)
        ]
        yield KeyedJaggedTensor(keys=[f.name for f in FEATURES], values=torch.cat(values), lengths=lengths)


def test_hot_rows_cut_every_table_at_one_rank_within_the_budget():
    tables = [PhysicalTable("a", 1000, 8), PhysicalTable("b", 10, 8)]  # 32 bytes of weights a row
    state = 4 * 1010  # row-wise Adagrad's state of every row stays in RAM
    assert hot_rows(tables, state + 32 * 1010, TableOptimizer.rowwise_adagrad) == [1000, 10]
    assert hot_rows(tables, state + 32 * 110, TableOptimizer.rowwise_adagrad) == [100, 10]
    assert hot_rows(tables, state + 32 * 110 - 1, TableOptimizer.rowwise_adagrad) == [99, 10]
    assert hot_rows(tables, 32 * 110, TableOptimizer.sgd) == [100, 10]  # no state
    with pytest.raises(ValueError, match="placement.ram_budget.*optimizer state"):
        hot_rows(tables, state + 32, TableOptimizer.rowwise_adagrad)


def test_sharded_ranks_share_the_budget_and_keep_tails_too_short_to_shard_hot():
    """Each of 2 ranks has the budget: the cut is one process's at twice it; a cold tail of fewer
    than 2² rows stays hot (row-wise, each rank then holds rows of every cold piece)."""
    tables = [PhysicalTable("a", 1000, 8), PhysicalTable("b", 103, 8)]
    state = 4 * 1103
    budget = (state + 32 * 200) // 2
    placement, optimizer = PlacementConfig(ram_budget=str(budget)), TableOptimizerConfig()
    assert hot_split(tables, optimizer, placement, ranks=2) == [100, 103]  # b's tail of 3 rows stays hot
    assert hot_rows(tables, 2 * budget, TableOptimizer.rowwise_adagrad) == [100, 100]
    assert hot_split(tables, optimizer, PlacementConfig(ram_budget=str(2 * budget))) == [100, 100]  # one process


@pytest.mark.parametrize(("piece_bytes", "budget"), [(None, "6KB"), (5 * 16 * 4, "8KB")], ids=["whole", "pieces_of_5_rows"])
@pytest.mark.parametrize(
    "method", [{"method": "full"}, {"method": "qr", "collisions": 4}, {"method": "hash", "compression": 2}]
)
def test_a_table_over_its_ram_budget_trains_on_disk_like_in_ram(method, piece_bytes, budget, tmp_path, monkeypatch):
    if piece_bytes is not None:  # FBGEMM's 4 GiB a table, scaled down: hot and cold parts cut into pieces
        monkeypatch.setattr(row_ranges, "MAX_PIECE_BYTES", piece_bytes)
    optimizer = TableOptimizerConfig()
    in_ram = make_embedding(method, FEATURES, 16, optimizer, seed=3)
    placement = PlacementConfig(ram_budget=budget, disk_dir=str(tmp_path))
    tiered = make_embedding(method, FEATURES, 16, optimizer, seed=3, placement=placement)
    assert isinstance(tiered.lookup, TieredLookup)
    assert (tiered.lookup.hot.levels > 1 and tiered.lookup.cold.levels > 1) == (piece_bytes is not None)
    tiers = tiered.tiers()
    assert 0 < tiers["ram_bytes"] <= placement.budget_bytes < tiers["ram_bytes"] + tiers["disk_bytes"]
    cold_file = tmp_path / "cold_weights.f32"
    before = cold_file.read_bytes()
    hot_limit = {t.name: k for t, k in zip(tiered.lookup.tables, tiered.lookup.hot_counts)}
    hits = lookups = 0
    for kjt in batches(4):
        expected, got = in_ram(kjt).values(), tiered(kjt).values()
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        (expected**2).sum().backward()  # the fused optimizer updates rows in the backward
        (got**2).sum().backward()
        ids, offsets, per_slot, _ = tiered.slot_ids(kjt)
        bags = torch.repeat_interleave(torch.arange(len(per_slot)), torch.tensor(per_slot))
        slot_of_id = torch.repeat_interleave(bags, offsets.diff())
        for i, slot in zip(ids.tolist(), slot_of_id.tolist()):  # brute force
            table = tiered.plan.tables[tiered.plan.slots[slot].table].name
            hits += i < hot_limit[table]
            lookups += 1
    assert (int(tiered.lookup.hits), int(tiered.lookup.lookups)) == (hits, lookups)
    assert tiered.tiers()["hit_rate"] == pytest.approx(hits / lookups)
    assert cold_file.read_bytes() != before  # the optimizer wrote through to the file
    for name, weight in in_ram.lookup.table_weights().items():
        torch.testing.assert_close(tiered.lookup.table_weights()[name], weight, rtol=0, atol=1e-6)


def test_reading_the_next_batch_ahead_changes_no_result(tmp_path):
    """The pipelined read-ahead (prefetch of batch i+1 before step i) against reads at the
    lookup and against none (``placement.read_ahead=false``, page faults only): the same outputs
    and tables, bit for bit; each batch after the first found its read-ahead."""
    optimizer = TableOptimizerConfig()
    runs = [make_embedding({"method": "full"}, FEATURES, 16, optimizer, seed=3,
                           placement=PlacementConfig(ram_budget="6KB", disk_dir=str(tmp_path / name), read_ahead=name != "faults"))
            for name in ("ahead", "now", "faults")]
    data = list(batches(6))
    for i, kjt in enumerate(data):
        if i + 1 < len(data):
            runs[0].prefetch(data[i + 1])
            runs[2].prefetch(data[i + 1])  # a no-op without read-ahead
        pipelined, plain, faults = (run(kjt).values() for run in runs)
        assert torch.equal(pipelined, plain) and torch.equal(pipelined, faults)
        for out in (pipelined, plain, faults):
            (out**2).sum().backward()
    assert runs[0].tiers()["read_ahead_batches"] == {"pipelined": 5, "synchronous": 1}
    assert runs[1].tiers()["read_ahead_batches"] == {"pipelined": 0, "synchronous": 6}
    assert runs[2].tiers()["read_ahead_batches"] == {"pipelined": 0, "synchronous": 0}
    assert runs[0].tiers()["cold_pages_read"] == runs[1].tiers()["cold_pages_read"] > 0  # the same pages either way
    assert runs[2].tiers()["cold_pages_read"] == 0
    for run in runs[1:]:
        for name, weight in run.lookup.table_weights().items():
            assert torch.equal(runs[0].lookup.table_weights()[name], weight)


def test_training_with_a_ram_budget_matches_training_in_ram(tiny_dataset, tmp_path):
    def job(placement):
        return TrainJobConfig(
            data=DataConfig(path=str(tiny_dataset), batch_size=256, eval_batch_size=1024, prefetch=2),
            model=DLRMConfig(8, [16, 8], [16, 1]),
            trainer=TrainerConfig(progress=False, tensorboard=False, epochs=1, max_steps=6),
            placement=placement,
        )

    in_ram = train(job(PlacementConfig()), tmp_path / "ram")
    tiered = train(job(PlacementConfig(ram_budget="20KB")), tmp_path / "disk")  # tables: 26 x 51 rows x 36 B
    tiers = tiered.memory["placement"]
    assert tiers["disk_bytes"] > 0 and tiers["ram_bytes"] <= 20000
    assert 0 < tiers["hit_rate"] < 1
    assert tiers["read_ahead_batches"]["pipelined"] == 5  # the loop read each batch after the first ahead
    assert (tmp_path / "disk" / "tables" / "cold_weights.f32").stat().st_size == tiers["disk_bytes"]
    summary = (tmp_path / "disk" / "eval.md").read_text()  # the person's summary says where the bytes live
    assert f"Placement: RAM {format_bytes(tiers['ram_bytes'])}, disk {format_bytes(tiers['disk_bytes'])}; fast-tier hit rate" in summary
    assert "Placement:" not in (tmp_path / "ram" / "eval.md").read_text()
    assert tiered.final_loss == pytest.approx(in_ram.final_loss, abs=1e-6)
    assert tiered.eval["logloss"] == pytest.approx(in_ram.eval["logloss"], abs=1e-6)
    assert tiered.eval["auc"] == pytest.approx(in_ram.eval["auc"], abs=1e-6)
    # the checkpoint rebuilds the tiered model elsewhere (its own cold files) and evaluates the same
    offline = evaluate_checkpoint(EvalJobConfig(checkpoint=str(tmp_path / "disk")), tmp_path / "eval")
    assert offline["metrics"]["logloss"] == pytest.approx(tiered.eval["logloss"], abs=1e-9)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("placement.cold_tier=ssd", "placement.cold_tier"),
        ("placement.hot_tier=device", "placement.hot_tier"),
        ("placement.hot_tier=uvm_cache", "placement.hot_tier"),
        ("placement.hot_tier=disk", "placement.hot_tier"),
        ("placement.ram_budget=lots", "placement.ram_budget"),
        ("placement.cache_load_factor=0", "placement.cache_load_factor"),
        ("placement.cache_algorithm=fifo", "placement.cache_algorithm"),
    ],
)
def test_a_bad_placement_is_an_error_naming_its_key(override, key):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[override, "data.path=x"])
    with pytest.raises(ValueError, match=key):
        job = to_job_config(cfg)
        make_embedding({"method": "full"}, FEATURES, 16, TableOptimizerConfig(), placement=job.placement)


def test_an_unknown_placement_key_fails_at_composition():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"), pytest.raises(Exception, match="ram_budgte"):
        compose("train", overrides=["placement.ram_budgte=1GB", "data.path=x"])


def test_a_recipe_keeps_its_placement():
    from recsys.models.build import recipe_from_dict, recipe_to_dict

    recipe = TrainJobConfig(data=DataConfig(path="x"), placement=PlacementConfig(ram_budget="1GB")).recipe()
    assert recipe_from_dict(recipe_to_dict(recipe)).placement == dataclasses.replace(PlacementConfig(), ram_budget="1GB")


def test_a_gpu_refuses_the_ram_budget_split_and_says_what_to_use():
    with pytest.raises(ValueError, match="placement.ram_budget.*placement.hot_tier=uvm_cache"):
        PlacementConfig(ram_budget="1GB").check_device("cuda")
    PlacementConfig(hot_tier="uvm_cache").check_device("cuda")  # whole tables behind FBGEMM's cache


def test_whole_tables_default_to_the_devices_own_memory():
    assert PlacementConfig().tier_on("cuda") == "device"
    assert PlacementConfig().tier_on("cpu") == "host"
    assert PlacementConfig(hot_tier="uvm_cache").tier_on("cuda") == "uvm_cache"
    lookup = make_embedding({"method": "full"}, FEATURES, 16, TableOptimizerConfig(), placement=PlacementConfig(hot_tier="host")).lookup
    assert lookup.tier == "host" and lookup.tiers() is None  # CPU tables in RAM: no tiers to report
