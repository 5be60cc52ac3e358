"""Sharding plans: overrides per logical feature reach its physical tables, refusals name
what is wrong, the plan describes every table (planner runs without processes)."""

from __future__ import annotations

import pytest

from recsys.embeddings.build import make_embedding
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.sharding import RecsysEBCSharder, ShardingPlanError, describe_plan, plan_sharding
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig

FEATURES = [FeatureInfo("C1", 1000), FeatureInfo("C2", 50), FeatureInfo("C3", 300)]


def shardable(method: dict):
    emb = make_embedding(method, FEATURES, 8, TableOptimizerConfig(), shardable=True)
    return emb, RecsysEBCSharder(fused_params=emb.lookup.fused_params())


def plan(emb, sharder, types, overrides, memory=1 << 30, world=2):
    return plan_sharding(emb, emb.plan, sharder, world, memory, TableOptimizer.rowwise_adagrad, types, overrides)


def test_override_of_a_feature_applies_to_all_its_physical_tables():
    emb, sharder = shardable({"method": "qr", "collisions": 4, "operation": "mult"})
    sharding = plan(emb, sharder, ["table_wise"], {"C1": "row_wise"})
    records = {r["table"]: r for r in describe_plan(sharding, emb.plan, TableOptimizer.rowwise_adagrad, "lookup.ebc")}
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
    assert {r["sharding_type"] for r in describe_plan(sharding, emb.plan, TableOptimizer.rowwise_adagrad, "lookup.ebc")} == {"column_wise"}


@pytest.mark.parametrize("width, shards", [(None, 1), (4, 2)])
def test_min_partition_sets_the_column_shard_width(width, shards):
    """torchrec splits columns min_partition wide (default 128: a dim-8 table stays whole)."""
    emb, sharder = shardable({"method": "full"})
    sharding = plan_sharding(emb, emb.plan, sharder, 2, 1 << 30, TableOptimizer.rowwise_adagrad, ["column_wise"], {},
                             min_partition=width)
    for record in describe_plan(sharding, emb.plan, TableOptimizer.rowwise_adagrad, "lookup.ebc"):
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
    sharder = RecsysEBCSharder(fused_params=emb.lookup.fused_params())
    with pytest.raises(ShardingPlanError, match=r"C1 \(table_wise, rank \d: 200,000,000 rows x 8\).*row_wise"):
        plan(emb, sharder, ["table_wise"], {}, memory=1 << 40)
    sharding = plan(emb, sharder, ["table_wise"], {"C1": "row_wise"}, memory=1 << 40)
    records = {r["table"]: r for r in describe_plan(sharding, emb.plan, TableOptimizer.rowwise_adagrad, "lookup.ebc")}
    assert records["C1"]["sharding_type"] == "row_wise"
