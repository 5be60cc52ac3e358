"""Every embedding method: shapes, accounting, the papers' defining properties, multi-hot bags."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.synth_model import KAGGLE_CARDINALITIES
from recsys.embeddings.build import make_embedding
from recsys.embeddings.compiler import METHODS, compile_plan, plan_bytes
from recsys.embeddings.embedding_config import BUDGET_KNOBS, parse_embedding_config
from recsys.embeddings.md import FeatureBlocks, alpha_power_rule, block_boundaries, merge_equal_runs, round_dims
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.qr import partition_sizes
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
from recsys.embeddings.transforms import MixedRadixDigits

SIZES = {"C1": 1000, "C2": 37, "C3": 5000, "C4": 3}
FEATURES = [FeatureInfo(name, n) for name, n in SIZES.items()]
DIM = 16
CONFIGS = {
    "full": {"method": "full"},
    "hash": {"method": "hash", "compression": 8},
    "hash_modulo": {"method": "hash", "compression": 8, "hash": "modulo"},
    "qr_mult": {"method": "qr", "collisions": 8},
    "qr_add": {"method": "qr", "collisions": 8, "operation": "add"},
    "qr_concat": {"method": "qr", "collisions": 8, "operation": "concat"},
    "qr_k3": {"method": "qr", "collisions": 4, "partitions": 3},
    "md_blocks": {"method": "md", "alpha": 0.4, "num_blocks": 4},
    "md_per_table": {"method": "md", "alpha": 0.4, "variant": "per_table"},
    "unified": {"method": "unified", "compression": 4},
    "unified_2probes": {"method": "unified", "compression": 4, "probes": 2},
    "mixed": {"method": "qr", "collisions": 8, "overrides": {"C2": {"method": "full"}, "C3": {"method": "hash", "rows": 64}}},
}


def collection(cfg, seed=0):
    torch.manual_seed(seed)
    return make_embedding(cfg, FEATURES, DIM, TableOptimizerConfig(), seed=seed)


def kjt(ids_per_feature: dict[str, list[list[int]]]) -> KeyedJaggedTensor:
    """A KJT from {feature: [bag ids, ...]} (every feature has the same number of bags)."""
    values, lengths = [], []
    for name in SIZES:
        for bag in ids_per_feature[name]:
            values += bag
            lengths.append(len(bag))
    batch = len(next(iter(ids_per_feature.values())))
    return KeyedJaggedTensor(keys=list(SIZES), values=torch.tensor(values, dtype=torch.int64),
                             lengths=torch.tensor(lengths, dtype=torch.int32), stride=batch)


def random_bags(rng, batch, max_len, single_hot=False):
    def size():
        return 1 if single_hot else rng.integers(0, max_len + 1)

    return {name: [list(rng.integers(0, n, size())) for _ in range(batch)] for name, n in SIZES.items()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_output_keys_shapes_and_accounting(name):
    emb = collection(CONFIGS[name])
    out = emb(kjt(random_bags(np.random.default_rng(0), 5, 1)))
    assert out.keys() == list(SIZES)
    assert out.values().shape == (5, len(SIZES) * DIM)
    report = emb.memory()
    weights = emb.lookup.tbe.state_dict()["weights_host"]
    assert report.parameters == weights.numel()
    assert report.weight_bytes == weights.numel() * 4
    assert report.optimizer_bytes == emb.lookup.tbe.state_dict()["momentum1_host"].numel() * 4
    assert report.combiner_parameters == sum(p.numel() for p in emb.feature_modules.parameters())
    setup = parse_embedding_config(CONFIGS[name])
    assert plan_bytes(setup, FEATURES, DIM, TableOptimizer.rowwise_adagrad) == report.total_bytes


def naive_feature_vector(emb, f: int, bag: list[int]) -> torch.Tensor:
    """The feature's vector for one bag, computed id by id from the physical tables' weights."""
    module = emb.feature_modules[f]
    weights = list(emb.lookup.table_weights().values())
    total = torch.zeros(DIM)
    for i in bag:
        ids = torch.tensor([i])
        rows = []
        for slot, (phys, _) in zip(module.slots, module.transform(ids, torch.tensor([1]))):
            table = emb.plan.slots[slot].table
            rows.append(weights[table][phys] if phys.numel() else torch.zeros(1, emb.plan.slots[slot].dim))
        x = torch.cat(rows, dim=1) if rows else torch.zeros(1, 0)
        total += module.combiner(x, torch.tensor([1]))[0]
    return total


@pytest.mark.parametrize("single_hot", [False, True], ids=["multi_hot", "single_hot"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bags_equal_a_naive_per_id_reference(name, single_hot):
    emb = collection(CONFIGS[name])
    with torch.no_grad():
        for p in emb.feature_modules.parameters():  # make projections non-trivial
            p.normal_()
    bags = random_bags(np.random.default_rng(1), 6, 4, single_hot)
    out = emb(kjt(bags)).values().detach()
    for f, name_f in enumerate(SIZES):
        for b, bag in enumerate(bags[name_f]):
            expected = naive_feature_vector(emb, f, bag)
            torch.testing.assert_close(out[b, f * DIM:(f + 1) * DIM], expected, rtol=1e-5, atol=1e-6)


def test_qr_mult_multi_hot_is_sum_of_products_not_product_of_sums():
    emb = collection({"method": "qr", "collisions": 8})
    bags = {name: [[i % n for i in (1, 2, 3)]] for name, n in SIZES.items()}  # ids within every table
    out = emb(kjt(bags)).values()[0, :DIM].detach()
    q, r = list(emb.lookup.table_weights().values())[:2]
    per_id = sum(q[i // 8] * r[i % 8] for i in (1, 2, 3))
    product_of_sums = sum(q[i // 8] for i in (1, 2, 3)) * sum(r[i % 8] for i in (1, 2, 3))
    torch.testing.assert_close(out, per_id)
    assert not torch.allclose(out, product_of_sums)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 10**7), m=st.integers(2, 300), k=st.integers(2, 4))
def test_compositional_partitions_give_every_id_a_unique_combination(n, m, k):
    sizes = partition_sizes(n, m, k)
    assert np.prod(sizes, dtype=object) >= n
    ids = torch.unique(torch.cat([torch.arange(min(n, 2000)), torch.randint(0, n, (2000,))]))
    digits = MixedRadixDigits([m] * (k - 1), per_id=False)(ids, torch.ones_like(ids))
    stacked = torch.stack([d for d, _ in digits], dim=1)
    assert all(int(d.max()) < size for (d, _), size in zip(digits, sizes))
    assert torch.unique(stacked, dim=0).shape[0] == ids.numel()


def test_compositional_vectors_of_distinct_ids_are_distinct():
    emb = collection({"method": "qr", "collisions": 8, "partitions": 3})
    ids = torch.arange(SIZES["C3"])
    bags = {name: [[int(i) % n] for i in ids] for name, n in SIZES.items()}
    vectors = emb(kjt(bags))["C3"].detach()
    assert torch.unique(vectors, dim=0).shape[0] == SIZES["C3"]


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 10**6), seed=st.integers(0, 1000), ids=st.lists(st.integers(0, 2**40), min_size=1, max_size=50))
def test_hashed_ids_stay_in_range(rows, seed, ids):
    features = [FeatureInfo("C1", 2 * 10**6)]  # larger than any drawn table: always hashed
    plan = compile_plan(parse_embedding_config({"method": "hash", "rows": rows, "seed": seed}), features, DIM,
                        TableOptimizer.rowwise_adagrad)
    assert plan.tables[0].num_embeddings == rows
    out, _ = plan.features[0].transform(torch.tensor(ids), torch.ones(len(ids), dtype=torch.int64))[0]
    assert int(out.min()) >= 0 and int(out.max()) < rows


def test_md_dimensions_follow_the_alpha_rule():
    popularity = np.array([1.0, 0.1, 0.01, 0.001])
    np.testing.assert_allclose(alpha_power_rule(popularity, 0.5, 16), 16 * popularity**0.5)
    assert list(round_dims(alpha_power_rule(popularity, 0.5, 16), 16)) == [16, 4, 0, 0]
    assert list(round_dims(alpha_power_rule(popularity, 0.0, 16), 16)) == [16, 16, 16, 16]
    # alpha beyond 1: dims fall faster than popularity (the per-table variant: test_embedding_config)
    assert list(round_dims(alpha_power_rule(popularity, 2.0, 16), 16)) == [16, 0, 0, 0]


def test_md_rounding_threshold_moves_where_fractional_dims_round():
    dims = np.array([1.9, 2.0, 3.5, 5.9, 9.0, 15.0])
    assert list(round_dims(dims, 16)) == [0, 4, 4, 4, 8, 16]  # 0.5: nearest multiple of 4
    assert list(round_dims(dims, 16, rounding=0.0)) == [0, 0, 0, 4, 8, 12]  # always down
    assert list(round_dims(dims, 16, rounding=0.9)) == [4, 4, 4, 8, 12, 16]  # nearly always up, at most base_dim
    # through a config: a higher threshold widens blocks and keeps rare ones (1000 ids, counts 1000 then 1)
    info = FeatureInfo("C1", 1000, np.concatenate([np.full(10, 1000), np.full(990, 1)]))

    def block_dims(rounding: float) -> list[int]:
        config = {"method": "md", "alpha": 0.3, "num_blocks": 3, "rounding": rounding}
        plan = compile_plan(parse_embedding_config(config), [info], DIM, TableOptimizer.rowwise_adagrad)
        return [t.dim for t in plan.tables]

    # popularity 1000, 1, 1: 16 * (1/1000)^0.3 = 2.01 -> 4·floor(0.50 + t); the two dim-4 blocks merge
    assert block_dims(0.5) == [16, 4] and block_dims(0.4) == [16]


def test_md_budgets_of_a_quarter_and_a_sixteenth_give_different_plans_that_use_them():
    """Kaggle's 26 table sizes: with one knob (alpha, nearest rounding) the largest plan under
    1/4 used 0.155 of the full bytes, because the big tables' tail blocks go from dim 4 to 0
    together; alpha and the rounding threshold together use most of each budget."""
    features = [FeatureInfo(f"C{i}", n + 1) for i, n in enumerate(KAGGLE_CARDINALITIES, 1)]
    full = sum(f.num_embeddings for f in features) * (DIM + 1) * 4  # weights + one Adagrad float per row
    plans = {}
    for budget, least_used in ((1 / 4, 0.8), (1 / 16, 0.9)):
        plan = compile_plan(parse_embedding_config({"method": "md", "budget": budget}), features, DIM, TableOptimizer.rowwise_adagrad)
        used = plan.memory(TableOptimizer.rowwise_adagrad).total_bytes
        assert least_used * budget * full <= used <= budget * full, (budget, used / full)
        plans[budget] = [(t.name, t.num_embeddings, t.dim) for t in plan.tables]
    assert plans[1 / 4] != plans[1 / 16]


def test_md_blocks_use_vocabulary_counts_and_are_frequency_ranges():
    counts = np.concatenate([np.full(10, 1000), np.full(990, 1)])
    info = FeatureInfo("C1", 1000, counts)
    plan = compile_plan(parse_embedding_config({"method": "md", "alpha": 0.5, "num_blocks": 3}), [info], DIM,
                        TableOptimizer.rowwise_adagrad)
    assert block_boundaries(1000, 3) == [0, 10, 100, 1000]
    # popularity: 1000 (ranks 0-9), 1 (10-99), 1 (100-999): dims 16, 16*(1/1000)^0.5 -> 0
    assert [(t.name, t.num_embeddings, t.dim) for t in plan.tables] == [("C1_b0", 10, 16)]


def test_md_merges_adjacent_blocks_of_equal_dims():
    paper = FeatureBlocks([0, 1, 8, 64, 512, 4096, 32768], [16, 16, 16, 8, 8, 0])
    assert merge_equal_runs(paper, 16, any_dim=True) == FeatureBlocks([0, 64, 4096, 32768], [16, 8, 0])
    # merge_equal_blocks=false: projected blocks keep their own projections
    assert merge_equal_runs(paper, 16, any_dim=False) == FeatureBlocks([0, 64, 512, 4096, 32768], [16, 8, 8, 0])
    assert merge_equal_runs(FeatureBlocks([0, 2, 4, 6], [8, 0, 0]), 16, False) == FeatureBlocks([0, 2, 6], [8, 0])
    # the merged plan is the same model: same ids reach the same (fewer) tables, the same init bound
    counts = np.concatenate([np.full(100, 1000), np.full(900, 1)])
    info = FeatureInfo("C1", 1000, counts)
    plan = compile_plan(parse_embedding_config({"method": "md", "alpha": 0.3, "num_blocks": 3}), [info], DIM,
                        TableOptimizer.rowwise_adagrad)
    # paper blocks [0,10) x16, [10,100) x16, [100,1000) x 16*(1/1000)^0.3 -> 4: the two heads are one table
    assert [(t.name, t.num_embeddings, t.dim, t.init_rows) for t in plan.tables] == [("C1_b0", 100, 16, 1000),
                                                                                    ("C1_b1", 900, 4, 1000)]
    ids = torch.tensor([3, 50, 99, 100, 999])
    (head, head_bags), (tail, tail_bags) = plan.features[0].transform(ids, torch.ones(5, dtype=torch.int64))
    assert head.tolist() == [3, 50, 99] and tail.tolist() == [0, 899]


def test_unified_features_share_one_table_with_different_probes():
    emb = collection({"method": "unified", "rows": 4096, "probes": 2})
    assert len(emb.plan.tables) == 1 and emb.plan.tables[0].dim == 8
    ids = torch.arange(1000)
    hashed = {f.name: f.transform(ids, torch.ones_like(ids)) for f in emb.plan.features}
    a, b = hashed["C1"], hashed["C3"]
    assert (a[0][0] == b[0][0]).float().mean() < 0.01  # features probe different rows
    assert (a[0][0] == a[1][0]).float().mean() < 0.01  # a feature's two probes differ


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_transforms_and_combiners_script_and_match_eager(name):
    emb = collection(CONFIGS[name])
    bags = random_bags(np.random.default_rng(2), 4, 3)
    batch = kjt(bags)
    values = torch.split(batch.values(), batch.length_per_key())
    lengths = batch.lengths().view(len(SIZES), -1)
    for f, module in enumerate(emb.feature_modules):
        eager = module.transform(values[f], lengths[f])
        scripted = torch.jit.script(module.transform)(values[f], lengths[f])
        for (ev, el), (sv, sl) in zip(eager, scripted):
            torch.testing.assert_close(ev, sv)
            torch.testing.assert_close(el, sl)
        rows = eager[0][1].numel() if eager else lengths[f].numel()
        x = torch.randn(rows, sum(emb.plan.slots[s].dim for s in module.slots))
        torch.testing.assert_close(torch.jit.script(module.combiner)(x, lengths[f]), module.combiner(x, lengths[f]))


@pytest.mark.parametrize("method", ["hash", "qr", "md", "unified"])
@pytest.mark.parametrize("budget", [0.25, 1 / 16])
def test_budget_picks_the_largest_plan_that_fits(method, budget):
    sizes = [200_000, 50_000, 3_000, 40]
    features = [FeatureInfo(f"C{i}", n) for i, n in enumerate(sizes, 1)]
    plan = compile_plan(parse_embedding_config({"method": method, "budget": budget}), features, DIM, TableOptimizer.rowwise_adagrad)
    # full tables by hand: float32 weights and one row-wise Adagrad accumulator per row
    full = sum(n * (DIM + 1) * 4 for n in sizes)
    used = plan.memory(TableOptimizer.rowwise_adagrad).total_bytes
    assert used <= budget * full
    # neither neighbouring knob value gives a larger plan that fits (QR's bytes are not
    # monotone in collisions: quotient tables shrink as remainder tables grow)
    field, *others = BUDGET_KNOBS[method]  # the size knob, the solved others held (md's rounding)
    fixed = {key: getattr(plan.default_spec, key) for key in others}
    values = [v.item() for v in METHODS[method].knob_values[0]()]
    at = values.index(getattr(plan.default_spec, field))
    for neighbour in {values[max(at - 1, 0)], values[min(at + 1, len(values) - 1)]}:
        config = {"method": method, field: neighbour, **fixed}
        size = plan_bytes(parse_embedding_config(config), features, DIM, TableOptimizer.rowwise_adagrad)
        assert size > budget * full or size <= used, (field, neighbour)
    if method != "md":  # md's sizes move in steps of 4 dims per block; the others come close
        assert used >= 0.8 * budget * full


def test_budget_below_any_plan_is_a_clear_error():
    with pytest.raises(ValueError, match="below the smallest md plan"):
        compile_plan(parse_embedding_config({"method": "md", "budget": 1e-6}), FEATURES, DIM, TableOptimizer.rowwise_adagrad)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="alpah"):
        parse_embedding_config({"method": "md", "alpah": 0.3})
    with pytest.raises(ValueError, match="embedding.overrides.C3"):
        parse_embedding_config({"method": "md", "overrides": {"C3": {"method": "qr", "colisions": 3}}})
    with pytest.raises(ValueError, match="not one of"):
        parse_embedding_config({"method": "tt"})
    with pytest.raises(KeyError, match="unknown features"):
        compile_plan(parse_embedding_config({"method": "hash", "overrides": {"C99": {"rows": 8}}}), FEATURES, DIM, TableOptimizer.sgd)
    with pytest.raises(ValueError, match="multiples of 4"):
        collection({"method": "unified", "probes": 8})


def touched_rows(emb, bags) -> dict[int, set]:
    """Physical table → the rows a batch looks up (from each feature's transform)."""
    touched: dict[int, set] = {}
    for f, (name, module) in enumerate(zip(SIZES, emb.feature_modules)):
        ids = torch.tensor([i for bag in bags[name] for i in bag], dtype=torch.int64)
        lengths = torch.tensor([len(bag) for bag in bags[name]], dtype=torch.int64)
        for slot, (rows, _) in zip(module.slots, module.transform(ids, lengths)):
            touched.setdefault(emb.plan.slots[slot].table, set()).update(rows.tolist())
    return touched


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_feature_without_ids_in_the_batch_gives_zeros_and_trains(name):
    emb = collection(CONFIGS[name])
    bags = random_bags(np.random.default_rng(3), 3, 3)
    bags["C3"] = [[], [], []]
    batch = kjt(bags)
    target = torch.randn(3, len(SIZES) * DIM, generator=torch.Generator().manual_seed(0))
    before = [w.detach().clone() for w in emb.lookup.table_weights().values()]
    losses = []
    for _ in range(5):
        out = emb(batch).values()  # (B, F·D)
        assert torch.count_nonzero(out[:, 2 * DIM:3 * DIM]) == 0
        loss = ((out - target) ** 2).mean()
        loss.backward()  # the fused update copes with an empty slot
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    touched = touched_rows(emb, bags)
    for table, (old, new) in enumerate(zip(before, emb.lookup.table_weights().values())):
        changed = set(torch.nonzero((old != new).any(dim=1)).flatten().tolist())
        assert changed == touched.get(table, set()), emb.plan.tables[table].name  # only looked-up rows move
