"""One recsys::transform_ids call gives the slot ids the per-feature transform modules give."""

import logging

import numpy as np
import pytest
import torch
from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.embeddings import fused_transforms
from recsys.embeddings.build import make_embedding
from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.combiners import Single
from recsys.embeddings.fused_transforms import BlockLayout, FusedTransforms, MaskedTransforms
from recsys.embeddings.optembed_compaction import compact_remap
from recsys.embeddings.optembed_modules import DropRows
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.specs import TableOptimizerConfig
from recsys.embeddings.transforms import Identity, RemapRows

pytestmark = pytest.mark.skipif(bool(fused_transforms.kernels_unavailable()), reason=fused_transforms.kernels_unavailable())

SIZES = {"C1": 1000, "C2": 37, "C3": 5000, "C4": 3}
FEATURES = [FeatureInfo(name, n, counts=np.arange(n, 0, -1)) for name, n in SIZES.items()]
DIM = 16
CONFIGS = {
    "hash": {"method": "hash", "compression": 8},
    "hash_modulo": {"method": "hash", "compression": 8, "hash": "modulo"},
    "qr_mult": {"method": "qr", "collisions": 8},
    "qr_add_k3": {"method": "qr", "collisions": 4, "partitions": 3, "operation": "add"},
    "md_blocks": {"method": "md", "alpha": 0.6, "num_blocks": 4},
    "md_per_table": {"method": "md", "alpha": 0.4, "variant": "per_table"},
    "unified_2probes": {"method": "unified", "compression": 4, "probes": 2},
    "mixed": {"method": "qr", "collisions": 8, "overrides": {"C2": {"method": "full"}, "C3": {"method": "md", "alpha": 0.5}}},
}


def kjt(rng, batch, max_len, sizes=SIZES):
    lengths = rng.integers(0 if max_len > 1 else 1, max_len + 1, len(sizes) * batch)
    per_feature = lengths.reshape(len(sizes), batch).sum(axis=1)
    values = np.concatenate([rng.integers(0, n, c) for n, c in zip(sizes.values(), per_feature)])
    return KeyedJaggedTensor(keys=list(sizes), values=torch.from_numpy(values), lengths=torch.from_numpy(lengths).int(), stride=batch)


def reference_slot_ids(emb, features):
    fused, emb.fused_transforms = emb.fused_transforms, None
    try:
        return emb.slot_ids(features)
    finally:
        emb.fused_transforms = fused


def assert_same_slot_ids(emb, features):
    assert emb.fused_transforms is not None
    got, want = emb.slot_ids(features), reference_slot_ids(emb, features)
    assert torch.equal(got[0], want[0]), "slot rows differ"
    assert torch.equal(got[1], want[1]), "slot offsets differ"
    assert got[2] == want[2]


@pytest.mark.parametrize("max_len", [1, 4], ids=["single_hot", "multi_hot"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_slot_ids_equal_the_modules(name, max_len):
    emb = make_embedding(CONFIGS[name], FEATURES, DIM, TableOptimizerConfig())
    # pooled slots only: B bags each, known without reading the op's output
    assert emb.fused_transforms.all_pooled == (name not in {"qr_mult", "mixed"})
    for seed in range(3):
        assert_same_slot_ids(emb, kjt(np.random.default_rng(seed), 7, max_len))


def test_off_the_cpu_the_masked_transforms_run_where_the_lookup_takes_their_weights():
    """recsys::transform_ids sizes its output from the ids (a GPU would wait for them): off the CPU
    the masked op runs, unless the plan drops ids and the lookup cannot take weights."""
    md, hashed = (make_embedding(CONFIGS[n], FEATURES, DIM, TableOptimizerConfig()).plan for n in ("md_blocks", "hash"))
    meta = torch.device("meta")
    assert isinstance(fused_transforms.fused_transforms_for(md, torch.device("cpu"), True), FusedTransforms)
    assert isinstance(fused_transforms.fused_transforms_for(md, meta, True), MaskedTransforms)
    assert fused_transforms.fused_transforms_for(md, meta, False) is None  # blocks drop ids: weights needed
    assert isinstance(fused_transforms.fused_transforms_for(hashed, meta, False), MaskedTransforms)


@pytest.mark.parametrize("name", ["md_blocks", "qr_mult", "mixed", "unified_2probes", "optembed"])
def test_masked_transforms_train_like_the_dropped_id_layout(name):
    """Dropped ids as weight-0 samples: the same outputs, the same fused-optimizer updates."""
    runs = []
    for masked in (True, False):
        torch.manual_seed(0)
        if name == "optembed":  # single-hot: its per-id slot has a Single combiner here
            emb, sizes, max_len = EmbeddingCollection(optembed_plan(), TableOptimizerConfig()), {"C1": 10, "C2": 10, "C3": 10}, 1
        else:
            emb, sizes, max_len = make_embedding(CONFIGS[name], FEATURES, DIM, TableOptimizerConfig()), SIZES, 3
        if masked:
            emb.fused_transforms = MaskedTransforms(emb.plan)
            assert emb.fused_transforms.weighted == (name in {"md_blocks", "mixed", "optembed"})
        outputs = []
        for seed in range(3):
            out = emb(kjt(np.random.default_rng(seed), 8, max_len, sizes)).values()  # (B, F * D)
            (out * torch.arange(out.shape[1])).sum().backward()
            outputs.append(out.detach())
        runs.append((outputs, list(emb.lookup.table_weights().values())))
    for masked, dropped in zip(*runs):
        for a, b in zip(masked, dropped):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def optembed_plan():
    """OptEmbed's three transforms (supernet per-id rows, retraining's dropped rows, compaction)."""
    keep = torch.tensor([True, False, True, True, False, False, True, False, True, True])
    builder = PlanBuilder(DIM)
    parts = {"C1": Identity(per_id=True), "C2": DropRows(keep), "C3": RemapRows(compact_remap(keep))}
    for name, transform in parts.items():
        rows = 7 if name == "C3" else 10
        slot = builder.slot(builder.table(name, rows, DIM))
        builder.feature(FeaturePlan(name, "optembed", [slot], transform, Single(), ""))
    return builder.build(list(parts))


@pytest.mark.parametrize("max_len", [1, 4], ids=["single_hot", "multi_hot"])
def test_optembed_transforms_equal_the_modules(max_len):
    emb = EmbeddingCollection(optembed_plan(), TableOptimizerConfig())
    for seed in range(3):
        assert_same_slot_ids(emb, kjt(np.random.default_rng(seed), 6, max_len, {"C1": 10, "C2": 10, "C3": 10}))


@pytest.mark.parametrize("name", ["md_blocks", "qr_mult", "mixed"])
def test_training_steps_are_identical(name):
    """Same slot ids, so the same outputs, fused-optimizer updates and combiner gradients."""
    runs = []
    for fuse in (True, False):
        torch.manual_seed(0)
        emb = make_embedding(CONFIGS[name], FEATURES, DIM, TableOptimizerConfig())
        if not fuse:
            emb.fused_transforms = None
        outputs = []
        for seed in range(2):
            out = emb(kjt(np.random.default_rng(seed), 8, 1)).values()  # (B, F * D)
            (out * torch.arange(out.shape[1])).sum().backward()
            outputs.append(out.detach())
        grads = [p.grad for p in emb.feature_modules.parameters()]
        runs.append((outputs, list(emb.lookup.table_weights().values()), grads))
    for fused, reference in zip(*runs):
        for a, b in zip(fused, reference):
            assert torch.equal(a, b)


def test_per_id_block_layout_routes_each_id_to_one_bag_of_its_block():
    emb = make_embedding(CONFIGS["md_blocks"], FEATURES, DIM, TableOptimizerConfig())
    features = kjt(np.random.default_rng(0), 9, 3)
    padded = emb.fused_transforms(features.values(), features.lengths(), 9)
    routed = FusedTransforms(emb.plan, BlockLayout.per_id)(features.values(), features.lengths(), 9)
    # the same rows in the same order; one bag per routed id, no empty bags
    assert torch.equal(routed.values, padded.values)
    assert torch.equal(routed.id_bags, padded.id_bags)
    assert torch.equal(routed.offsets, torch.arange(routed.values.numel() + 1))
    routed_per_slot = torch.bincount(torch.repeat_interleave(torch.arange(len(emb.plan.slots)), padded.bags_per_slot),
                                     weights=padded.offsets.diff().double(), minlength=len(emb.plan.slots))
    assert routed.bags_per_slot.tolist() == routed_per_slot.long().tolist()
    assert int(routed.bags_per_slot.sum()) < 9 * len(emb.plan.slots)  # no empty-bag padding


def test_without_kernels_the_modules_run_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(fused_transforms, "kernels_unavailable", lambda: "the C++ extension is not built")
    with caplog.at_level(logging.WARNING, logger=fused_transforms.__name__):
        emb = make_embedding(CONFIGS["qr_mult"], FEATURES, DIM, TableOptimizerConfig())
    assert emb.fused_transforms is None
    assert "one feature at a time" in caplog.text and "not built" in caplog.text
    assert emb(kjt(np.random.default_rng(0), 4, 2)).values().shape == (4, len(SIZES) * DIM)


class Negate(nn.Module):
    def forward(self, values, lengths):
        return [(-values, lengths)]


def test_a_transform_without_fused_kind_falls_back_naming_the_feature(caplog):
    builder = PlanBuilder(DIM)
    builder.feature(FeaturePlan("C1", "custom", [builder.slot(builder.table("C1", 10, DIM))], Negate(), Single(), ""))
    with caplog.at_level(logging.WARNING, logger=fused_transforms.__name__):
        emb = EmbeddingCollection(builder.build(["C1"]), TableOptimizerConfig())
    assert emb.fused_transforms is None
    assert "feature C1: transform Negate has no fused kind" in caplog.text


@pytest.mark.parametrize("name", ["md_blocks", "qr_add_k3", "mixed"])
def test_an_id_beyond_its_table_is_an_error_naming_the_feature(name):
    """The fused op checks every row against its table, so FBGEMM's bounds check, which would
    zero the row with a warning, is off; an id past the vocabulary is an error naming it."""
    emb = make_embedding(CONFIGS[name], FEATURES, DIM, TableOptimizerConfig())
    emb(kjt(np.random.default_rng(0), 64, 1, SIZES))
    assert emb.lookup.tbe.bounds_check_mode_int == BoundsCheckMode.NONE.value
    too_big = {**SIZES, "C3": SIZES["C3"] * 4096}  # rank far past C3's 5000 rows
    features = kjt(np.random.default_rng(0), 64, 1, too_big)
    with pytest.raises(RuntimeError, match=r"of feature C3 \(bag \d+\) maps to row \d+ of slot \d+, beyond its table's"):
        emb(features)


def test_unchecked_ids_get_fbgemm_bounds_check_back():
    """The check is chosen per call: the per-feature modules (unchecked ids) get FBGEMM's."""
    emb = make_embedding(CONFIGS["md_blocks"], FEATURES, DIM, TableOptimizerConfig())
    features = kjt(np.random.default_rng(0), 64, 1, SIZES)
    emb(features)
    emb.fused_transforms = None
    emb(features)
    assert emb.lookup.tbe.bounds_check_mode_int == BoundsCheckMode.WARNING.value
