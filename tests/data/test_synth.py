"""Synthetic Criteo-shaped data: layout contract, determinism, skew, planted model, Bayes figures."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE
from recsys.data.layout import (
    LABEL,
    SPLITS,
    VOCAB_SCHEMA,
    DatasetMeta,
    list_shards,
    shard_schema,
    vocab_path,
)
from recsys.data.synth import (
    BayesAccumulator,
    SynthConfig,
    planted_model,
    feature_space,
    generate,
    split_rows,
)
from recsys.data import synth_model
from recsys.data.synth_model import (
    DENSE_MISSING,
    DENSE_SHAPES,
    KAGGLE_CARDINALITIES,
    PlantedModel,
    SPARSE_MISSING,
    hashed_normals,
    scrambled_ids,
    sigmoid,
)
from recsys.core.metrics import auc

SMALL = dict(profile="kaggle", rows=60_000, cardinality_scale=1e-3, rows_per_shard=25_000,
             chunk_rows=16_384, valid_fraction=0.1, test_fraction=0.1, workers=1)  # fmt: skip


def read_split(root: Path, split: str):
    tables = [pq.read_table(p) for p in list_shards(root, split)]
    label = np.concatenate([t[LABEL].to_numpy() for t in tables])
    dense = np.stack([np.concatenate([t[c].to_numpy() for t in tables]) for c in CRITEO_DENSE], 1)
    sparse = np.stack([np.concatenate([t[c].to_numpy() for t in tables]) for c in CRITEO_CATEGORICAL], 1)
    return label, dense, sparse


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[SynthConfig, Path, dict]:
    cfg = SynthConfig(output=str(tmp_path_factory.mktemp("synth") / "a"), **SMALL)
    return cfg, Path(cfg.output), generate(cfg, progress=False)


@pytest.fixture(scope="module")
def small_model(small) -> PlantedModel:
    return planted_model(small[0])


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_layout_schema_and_meta(small):
    cfg, root, summary = small
    meta = DatasetMeta.load(root)
    expected_rows = split_rows(cfg)
    assert meta.rows == expected_rows == {"train": 48_000, "valid": 6_000, "test": 6_000}
    assert meta.source["kind"] == "synthetic" and meta.source["profile"] == "kaggle"
    cards = {f: max(2, round(n * 1e-3)) for f, n in zip(CRITEO_CATEGORICAL, KAGGLE_CARDINALITIES)}
    assert meta.num_embeddings == {f: n + 1 for f, n in cards.items()}
    assert [p.name for p in list_shards(root, "train")] == ["part-00000.parquet", "part-00001.parquet"]
    for split in SPLITS:
        rows = 0
        for path in list_shards(root, split):
            file = pq.ParquetFile(path)
            assert file.schema_arrow == shard_schema(list(CRITEO_DENSE), list(CRITEO_CATEGORICAL))
            assert file.metadata.num_rows <= cfg.rows_per_shard
            rows += file.metadata.num_rows
        assert rows == expected_rows[split] == summary[split]["rows"]
    label, dense, sparse = read_split(root, "train")
    assert set(np.unique(label)) == {0, 1}
    assert dense.dtype == np.float32 and (dense >= 0).all()
    assert sparse.dtype == np.int32 and (sparse >= 0).all()
    assert (sparse < np.array([cards[f] for f in CRITEO_CATEGORICAL])).all()


def test_vocab_counts_train_ranks(small, small_model):
    _, root, _ = small
    meta = DatasetMeta.load(root)
    _, _, sparse = read_split(root, "train")
    model = small_model
    for f, name in enumerate(CRITEO_CATEGORICAL):
        table = pq.read_table(vocab_path(root, name))
        assert table.schema == VOCAB_SCHEMA
        assert table.num_rows == meta.num_embeddings[name] - 1
        counts = table["count"].to_numpy()
        np.testing.assert_array_equal(counts, np.bincount(sparse[:, f], minlength=table.num_rows))
        raw = table["raw"].to_numpy()
        assert len(np.unique(raw)) == len(raw)
        missing = np.flatnonzero(raw == -1)
        if SPARSE_MISSING[name] > 0:
            assert list(missing) == [model.space.missing_ranks[f]]
        else:
            assert missing.size == 0


def test_same_config_is_byte_identical_for_any_chunk_size_and_workers(small, tmp_path):
    cfg, root, _ = small
    again = dataclasses.replace(cfg, output=str(tmp_path / "b"), chunk_rows=40_000, workers=2)
    generate(again, progress=False)
    assert _files(root) == _files(Path(again.output))
    other = dataclasses.replace(cfg, output=str(tmp_path / "c"), seed=1)
    generate(other, progress=False)
    assert read_split(root, "valid")[2].tobytes() != read_split(Path(other.output), "valid")[2].tobytes()


def test_ranks_follow_zipf_and_missing_rates(small, small_model):
    cfg, root, _ = small
    _, dense, sparse = read_split(root, "train")
    space = small_model.space
    c1 = np.bincount(sparse[:, 0])
    assert c1[0] / len(sparse) > 0.45  # C1's top value: ~50% on Criteo
    assert c1[:10].sum() / len(sparse) > 0.85  # top 10 values: ~91%
    for f in range(len(CRITEO_CATEGORICAL)):
        freq = np.bincount(sparse[:, f], minlength=space.cardinalities[f]) / len(sparse)
        expected = space.rank_probability(f, np.arange(space.cardinalities[f]))
        assert abs(expected.sum() - 1) < 1e-9
        assert (np.diff(expected) <= 1e-15).all()  # ranks are exact frequency ranks
        top = min(5, len(freq))
        np.testing.assert_allclose(freq[:top], expected[:top], atol=0.01)
        observed_missing = (sparse[:, f] == space.missing_ranks[f]).mean()
        assert abs(observed_missing - SPARSE_MISSING[CRITEO_CATEGORICAL[f]]) < 0.01
    for j, name in enumerate(CRITEO_DENSE):  # 0 = missing, or a count of 0 (exp(mu + sigma z) < 1)
        (mu, sigma), m = DENSE_SHAPES[name], DENSE_MISSING[name]
        zero = m + (1 - m) * 0.5 * (1 + math.erf(-mu / sigma / math.sqrt(2)))
        assert abs((dense[:, j] == 0).mean() - zero) < 0.01, name


@pytest.mark.parametrize("profile, rate", [("kaggle", 0.2562), ("terabyte", 0.03)])
def test_positive_rate_and_bayes_auc(profile, rate, tmp_path):
    cfg = SynthConfig(output=str(tmp_path / profile), profile=profile, rows=100_000,
                      cardinality_scale=1e-3, valid_fraction=0.3, test_fraction=0.0)  # fmt: skip
    summary = generate(cfg, progress=False)
    assert abs(summary["train"]["positive_rate"] - rate) < 0.1 * rate
    assert 0.76 < summary["valid"]["bayes_auc"] < 0.9
    assert summary["test"]["rows"] == 0 and summary["test"]["bayes_auc"] is None
    assert json.loads((Path(cfg.output) / "bayes.json").read_text())["valid"] == summary["valid"]


def test_bayes_figures_equal_recomputation_from_shards(small, small_model):
    cfg, root, summary = small
    label, dense, sparse = read_split(root, "valid")
    p = small_model.probability(dense, sparse)
    assert summary["valid"]["bayes_auc"] == pytest.approx(auc(p, label), abs=1e-12)
    logloss = -np.mean(np.where(label == 1, np.log(p), np.log1p(-p)))
    assert summary["valid"]["bayes_logloss"] == pytest.approx(logloss, rel=1e-9)
    assert summary["valid"]["positives"] == label.sum()


def test_streaming_auc_matches_exact():
    rng = np.random.default_rng(0)
    logit = rng.normal(-1.0, 1.4, 400_000)
    label = (rng.random(logit.size) < sigmoid(logit)).astype(np.int8)
    exact, streamed = BayesAccumulator(logit.size), BayesAccumulator(logit.size, exact_max_rows=0)
    for acc in (exact, streamed):
        for part in np.array_split(np.arange(logit.size), 7):
            acc.update(logit[part], label[part])
    a, b = exact.result(), streamed.result()
    assert a["auc_method"] == "exact" and b["auc_method"].startswith("histogram")
    assert abs(a["bayes_auc"] - b["bayes_auc"]) < 1e-5
    assert a["bayes_logloss"] == pytest.approx(b["bayes_logloss"], rel=1e-12)


def test_effects_decay_with_rank(small_model):
    model = small_model
    c3 = CRITEO_CATEGORICAL.index("C3")
    scale = model.effect_scale(c3, np.array([0, 100, 10_000]))
    assert scale[0] > 0.99 and scale[0] > scale[1] > scale[2]


def test_hash_helpers():
    key = np.uint64(12345)
    ids = scrambled_ids(key, np.arange(1 << 16))
    assert len(np.unique(ids)) == 1 << 16 and ids.min() >= 0 and ids.max() < 2**32
    z = hashed_normals(key, np.arange(20_000), 9)  # (20000, 9)
    assert z.shape == (20_000, 9)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    np.testing.assert_array_equal(hashed_normals(key, np.array([7]), 9)[0], z[7])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(profile="avazu"), "profile"),
        (dict(rows=0), "rows"),
        (dict(valid_fraction=0.6, test_fraction=0.5), "train would be empty"),
        (dict(cardinality_scale=0.0), "cardinality_scale"),
        (dict(max_cardinality=1), "max_cardinality"),
        (dict(output="???"), "output"),
        (dict(positive_rate=1.5), "positive_rate"),
        (dict(workers=-1), "workers"),
    ],
)
def test_invalid_configs_are_rejected(change, message, tmp_path):
    cfg = SynthConfig(**{**SMALL, "output": str(tmp_path / "x"), **change})
    with pytest.raises(ValueError, match=message):
        generate(cfg, progress=False)


def test_refuses_non_empty_output(small):
    with pytest.raises(FileExistsError):
        generate(small[0], progress=False)


def test_head_cache_is_only_an_optimisation(small, small_model, monkeypatch):
    """Ids beyond the cached head are hashed on the fly and get the very same parameters."""
    cfg, root, _ = small
    _, dense, sparse = read_split(root, "valid")
    cached = small_model.logit(dense, sparse)
    monkeypatch.setattr(synth_model, "HEAD_ROWS", 4)
    hashed = planted_model(cfg)
    assert (sparse >= 4).any()
    np.testing.assert_array_equal(hashed.logit(dense, sparse), cached)


def test_sampler_matches_distribution_of_a_10m_id_feature():
    space = feature_space(SynthConfig(output="unused", profile="kaggle"))
    c3 = CRITEO_CATEGORICAL.index("C3")
    u = np.random.default_rng(1).random((200_000, len(CRITEO_CATEGORICAL)))
    ranks = space.sparse_ranks(u)[:, c3]
    assert ranks.max() < space.cardinalities[c3] == KAGGLE_CARDINALITIES[c3]
    head = space.rank_probability(c3, np.arange(1000))
    for lo, hi in [(0, 1), (1, 10), (10, 1000)]:
        assert abs((ranks >= lo).mean() - (ranks >= hi).mean() - head[lo:hi].sum()) < 0.005
    assert abs((ranks == space.missing_ranks[c3]).mean() - SPARSE_MISSING["C3"]) < 0.003


def test_multi_hot_bags_have_their_sizes_signal_and_counts(tmp_path):
    from recsys.data.config import BagSize

    bags = {"C3": BagSize(1, 5), "C1": BagSize(2, 2)}
    cfg = SynthConfig(output=str(tmp_path / "m"), **{**SMALL, "rows": 20_000}, multi_hot=bags)
    summary = generate(cfg, progress=False)
    root = Path(cfg.output)
    meta = DatasetMeta.load(root)
    assert meta.multi_hot_features == ["C1", "C3"]
    assert meta.shard_schema() == pq.read_schema(list_shards(root, "train")[0]).remove_metadata()
    tables = [pq.read_table(p) for p in list_shards(root, "train")]
    c3 = [bag for t in tables for bag in t["C3"].to_pylist()]
    sizes = np.array([len(b) for b in c3])
    assert sizes.min() == 1 and sizes.max() == 5 and abs(sizes.mean() - 3) < 0.05
    assert all(len(b) == 2 for t in tables for b in t["C1"].to_pylist())
    counts = pq.read_table(vocab_path(root, "C3"))["count"].to_numpy()
    assert counts.sum() == sizes.sum()
    assert np.array_equal(counts, np.bincount([r for b in c3 for r in b], minlength=len(counts)))
    # Bayes figures come from the model over every id of every bag: recompute them from the shards
    model = planted_model(cfg)
    valid = [pq.read_table(p) for p in list_shards(root, "valid")]
    label = np.concatenate([t[LABEL].to_numpy() for t in valid])
    dense = np.stack([np.concatenate([t[c].to_numpy() for t in valid]) for c in CRITEO_DENSE], 1)
    first, extra = {}, {}
    for name, size in bags.items():
        lists = [b for t in valid for b in t[name].to_pylist()]
        first[name] = np.array([b[0] for b in lists])
        extra[CRITEO_CATEGORICAL.index(name)] = np.array([b[1:] + [-1] * (size.max - len(b)) for b in lists]).reshape(len(lists), size.max - 1)
    sparse = np.stack([first[c] if c in first else np.concatenate([t[c].to_numpy() for t in valid])
                       for c in CRITEO_CATEGORICAL], 1)
    p = model.probability(dense, sparse, extra)
    assert summary["valid"]["bayes_auc"] == pytest.approx(auc(p, label), abs=1e-12)
    assert summary["valid"]["bayes_auc"] != pytest.approx(auc(model.probability(dense, sparse), label), abs=1e-4)
