"""Sharding plans: overrides per logical feature reach its physical tables, refusals name
what is wrong, the plan describes every table (planner runs without processes)."""

from __future__ import annotations

import pytest

from recsys.embeddings.build import make_embedding
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.sharding_plan import ShardingPlanError, describe_plan, format_plan, plan_sharding
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig

FEATURES = [FeatureInfo("C1", 1000), FeatureInfo("C2", 50), FeatureInfo("C3", 300)]


def shardable(method: dict):
    emb = make_embedding(method, FEATURES, 8, TableOptimizerConfig(), shardable=True)
    return emb, emb.lookup.sharder()


def plan(emb, sharder, types, overrides, memory=1 << 30, world=2):
    return plan_sharding(emb, emb.plan, sharder, world, memory, TableOptimizer.rowwise_adagrad, types, overrides)


def test_override_of_a_feature_applies_to_all_its_physical_tables():
    emb, sharder = shardable({"method": "qr", "collisions": 4, "operation": "mult"})
    sharding = plan(emb, sharder, ["table_wise"], {"C1": "row_wise"})
    records = {r["table"]: r for r in describe_plan(sharding, emb.plan.tables, TableOptimizer.rowwise_adagrad, "lookup.ebc")}
    c1_tables = [t.name for t in emb.plan.tables if t.name.startswith("C1")]
    assert len(c1_tables) == 2  # quotient and remainder
    for name, record in records.items():
        assert record["sharding_type"] == ("row_wise" if name in c1_tables else "table_wise"), name
        assert record["bytes"] == record["rows"] * (record["dim"] * 4 + 4)  # weights + row-wise Adagrad state
    row_wise = records[c1_tables[0]]
    assert row_wise["ranks"] == [0, 1]
    assert sum(s["sizes"][0] for s in row_wise["shards"]) == row_wise["rows"]


def test_allowed_types_bound_the_planner():
    emb, sharder = shardable({"method": "full"})
    sharding = plan(emb, sharder, ["column_wise"], {})
    assert {r["sharding_type"] for r in describe_plan(sharding, emb.plan.tables, TableOptimizer.rowwise_adagrad, "lookup.ebc")} == {"column_wise"}


@pytest.mark.parametrize("width, shards", [(None, 1), (4, 2)])
def test_min_partition_sets_the_column_shard_width(width, shards):
    """torchrec splits columns min_partition wide (default 128: a dim-8 table stays whole)."""
    emb, sharder = shardable({"method": "full"})
    sharding = plan_sharding(emb, emb.plan, sharder, 2, 1 << 30, TableOptimizer.rowwise_adagrad, ["column_wise"], {},
                             min_partition=width)
    for record in describe_plan(sharding, emb.plan.tables, TableOptimizer.rowwise_adagrad, "lookup.ebc"):
        assert [s["sizes"][1] for s in record["shards"]] == [8 // shards] * shards, record["table"]
    with pytest.raises(ShardingPlanError, match="sharding.min_partition: 0 is not a column count"):
        plan_sharding(emb, emb.plan, sharder, 2, 1 << 30, TableOptimizer.rowwise_adagrad, ["column_wise"], {}, min_partition=0)


@pytest.mark.parametrize(
    "types, overrides, message",
    [
        (["diagonal"], {}, "sharding.types: unknown sharding type 'diagonal'"),
        (["table_wise"], {"C9": "row_wise"}, r"sharding.overrides.C9: no such feature"),
        (["table_wise"], {"C1": "sideways"}, r"sharding.overrides.C1: unknown sharding type"),
        ([], {}, "sharding.types is empty"),
    ],
)
def test_bad_sharding_config_names_the_key(types, overrides, message):
    emb, sharder = shardable({"method": "full"})
    with pytest.raises(ShardingPlanError, match=message):
        plan(emb, sharder, types, overrides)


def test_conflicting_overrides_of_a_shared_table_are_refused():
    emb, sharder = shardable({"method": "unified", "compression": 2.0})
    with pytest.raises(ShardingPlanError, match="shared by C1 .* and C2"):
        plan(emb, sharder, ["table_wise"], {"C1": "row_wise", "C2": "table_wise"})


def test_tables_that_cannot_fit_are_refused_naming_tables_and_limits():
    emb, sharder = shardable({"method": "full"})
    with pytest.raises(ShardingPlanError, match=r"need 47\.\d+ KiB .* 2 rank\(s\) hold 10\.00 KiB each .* largest: C1 35\.16 KiB"):
        plan(emb, sharder, ["row_wise"], {}, memory=10 * 1024)


def test_cpu_shards_over_4_gib_are_refused_and_row_wise_splits_them():
    """FBGEMM's CPU row-wise Adagrad misplaces updates past 4 GiB of one table (tests/embeddings/test_row_ranges.py):
    a table-wise shard of a 6.4 GB table is refused, naming it; row-wise over 2 ranks (3.2 GB each) plans."""
    emb = make_embedding({"method": "full"}, [FeatureInfo("C1", 200_000_000), FeatureInfo("C2", 50)], 8,
                         TableOptimizerConfig(), shardable=True)
    sharder = emb.lookup.sharder()
    with pytest.raises(ShardingPlanError, match=r"C1 \(table_wise, rank \d: 200,000,000 rows x 8\).*row_wise"):
        plan(emb, sharder, ["table_wise"], {}, memory=1 << 40)
    sharding = plan(emb, sharder, ["table_wise"], {"C1": "row_wise"}, memory=1 << 40)
    records = {r["table"]: r for r in describe_plan(sharding, emb.plan.tables, TableOptimizer.rowwise_adagrad, "lookup.ebc")}
    assert records["C1"]["sharding_type"] == "row_wise"


def gpu_plan(hot_tier, gpu_memory=1 << 30, host_memory=1 << 30, features=FEATURES, **placement):
    """A 2-GPU plan (torchrec's planner needs no GPU to plan) of tables in the ``hot_tier``."""
    emb = make_embedding({"method": "full"}, features, 8, TableOptimizerConfig(), device="cuda", shardable=True,
                         placement=PlacementConfig(hot_tier=hot_tier, **placement))
    sharding = plan_sharding(emb, emb.plan, emb.lookup.sharder(), 2, gpu_memory, TableOptimizer.rowwise_adagrad,
                             ["table_wise", "row_wise"], {}, device_type="cuda", host_memory=host_memory)
    return emb, describe_plan(sharding, emb.plan.tables, TableOptimizer.rowwise_adagrad, "lookup.ebc")


@pytest.mark.parametrize("hot_tier, kernel, placement", [
    (None, "fused", "device"),
    ("device", "fused", "device"),
    ("uvm_cache", "fused_uvm_caching", "uvm_cache (host memory, 0.3 of the rows cached in GPU memory)"),
    ("host", "fused_uvm", "host (read by the GPU through unified memory)"),
])
def test_gpu_tiers_shard_through_torchrec_kernels(hot_tier, kernel, placement):
    """placement.hot_tier picks torchrec's compute kernel for every shard, with the cache's load factor."""
    emb, records = gpu_plan(hot_tier, cache_load_factor=0.3)
    assert {r["compute_kernel"] for r in records} == {kernel}
    assert {r["cache_load_factor"] for r in records} == ({0.3} if hot_tier == "uvm_cache" else {None})
    assert placement in format_plan(records, [1, 1], "cuda").splitlines()[1]
    assert emb.lookup.fused_params().get("gather_uvm_cache_stats", False) == (hot_tier == "uvm_cache")


def test_uvm_cache_shards_tables_larger_than_gpu_memory():
    """Tables over the GPUs' memory (144 MB over 2 x 40 MiB) shard with uvm_cache: GPU memory holds
    only their cache; their host memory, and GPU memory for tables kept there, are still checked."""
    big = [FeatureInfo("C1", 4_000_000), FeatureInfo("C2", 50)]
    _, records = gpu_plan("uvm_cache", gpu_memory=40 << 20, features=big, cache_load_factor=0.2)
    assert {r["compute_kernel"] for r in records} == {"fused_uvm_caching"}
    with pytest.raises(ShardingPlanError, match=r"2 rank\(s\) hold 40\.00 MiB each \(sharding.rank_memory\); largest: C1"):
        gpu_plan("device", gpu_memory=40 << 20, features=big)
    with pytest.raises(ShardingPlanError, match=r"need 137\.\d+ MiB .* hold 50\.00 MiB each \(host memory\)"):
        gpu_plan("host", gpu_memory=40 << 20, host_memory=50 << 20, features=big)


def test_a_sharded_disk_tier_is_two_collections_its_cold_pieces_planned_row_wise(tmp_path):
    """A budget the tables exceed gives a hot and a cold collection (no file written before
    sharding places the cold shards); the cold pieces hold each table's rows from its hot count on,
    and the planner puts them row-wise whatever the run allows; the overrides reach the hot pieces.
    A budget every table fits needs no tier."""
    emb = make_embedding({"method": "full"}, FEATURES, 8, TableOptimizerConfig(), shardable=True,
                         placement=PlacementConfig(ram_budget="10KB", disk_dir=str(tmp_path)))
    (hot_path, hot), (cold_path, cold) = emb.lookup.shardable_parts()
    assert not any(tmp_path.iterdir())
    assert hot.sharding_types is None and cold.sharding_types == ["row_wise"]
    counts = emb.lookup.hot_counts
    assert 0 < min(counts) and all(k < f.num_embeddings for k, f in zip(counts, FEATURES))
    assert [(whole.name, first) for whole, _, first in cold.origins] == [
        (t.name, k) for t, k in zip(emb.plan.tables, counts) if k < t.num_embeddings
    ]
    kinds = ["table_wise", "row_wise", "column_wise"]
    records = {}
    for path, part in ((hot_path, hot), (cold_path, cold)):
        tables = [(t, index) for t, (_, index, _) in zip(part.tables, part.origins)]
        sharding = plan_sharding(emb, emb.plan, part.sharder(), 2, 1 << 30, TableOptimizer.rowwise_adagrad,
                                 part.sharding_types or kinds, {} if part.sharding_types else {"C1": "table_wise"}, tables=tables)
        records.update({r["table"]: r for r in describe_plan(sharding, part.tables, TableOptimizer.rowwise_adagrad, f"lookup.{path}.ebc")})
    assert {r["sharding_type"] for name, r in records.items() if "_cold" in name} == {"row_wise"}
    assert records["C1_hot"]["sharding_type"] == "table_wise"
    whole = make_embedding({"method": "full"}, FEATURES, 8, TableOptimizerConfig(), shardable=True,
                           placement=PlacementConfig(ram_budget="1MB", disk_dir=str(tmp_path)))
    assert [path for path, _ in whole.lookup.shardable_parts()] == [""]


def test_a_tiered_plan_keeps_each_ranks_hot_shards_within_its_ram_budget(tmp_path):
    """torchrec's planner balances step time: whole hot pieces on one rank can exceed its budget;
    such a plan is redone row-wise (even), and refused, naming the ranks' bytes, where overrides
    keep pieces whole that no rank can hold."""
    import torch

    from recsys.embeddings.placement import tiered_lookup
    from recsys.embeddings.sharding_plan import bytes_per_rank
    from recsys.train.distributed import _within_ram_budget

    features = [FeatureInfo("C1", 8000), FeatureInfo("C2", 50)]  # C1's hot piece is over one rank's budget
    plan_of = make_embedding({"method": "full"}, features, 8, TableOptimizerConfig()).plan
    placement = PlacementConfig(ram_budget="75KB", disk_dir=str(tmp_path))  # each of 2 ranks'
    lookup = tiered_lookup(plan_of.tables, TableOptimizerConfig(), placement, torch.device("cpu"), 0, [0, 1], ranks=2)
    (path, hot), _ = lookup.shardable_parts()
    kind, where = TableOptimizer.rowwise_adagrad, f"{path}.ebc"
    tables = [(t, index) for t, (_, index, _) in zip(hot.tables, hot.origins)]

    def planned(types, overrides=None):
        return plan_sharding(lookup, plan_of, hot.sharder(), 2, 1 << 30, kind, types, overrides or {}, tables=tables)

    budget = lookup.hot_bytes_per_rank(2)
    whole = planned(["table_wise"])
    assert max(bytes_per_rank(whole, where, hot.tables, kind, 2)) > budget  # whole pieces do not share out
    even = _within_ram_budget(whole, planned, hot, lookup, where, kind, 2)
    assert {r["sharding_type"] for r in describe_plan(even, hot.tables, kind, where)} == {"row_wise"}
    assert max(bytes_per_rank(even, where, hot.tables, kind, 2)) <= budget + 2 * 36
    forced = lambda types: planned(types, {"C1": "table_wise"})  # noqa: E731
    with pytest.raises(ShardingPlanError, match=r"placement.ram_budget: the hot rows' shards need rank 0 .* even row-wise"):
        _within_ram_budget(forced(["table_wise"]), forced, hot, lookup, where, kind, 2)
