"""The single-GPU path (skipped without CUDA; scripts/gpu_check.sh runs these on a GPU machine):
training and evaluation on the device, every table placement a GPU offers, and a forward pass
that never waits for the device."""

from __future__ import annotations

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.embeddings.build import make_embedding
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.specs import TableOptimizerConfig
from recsys.models.config import DLRMConfig
from recsys.models.dlrm import DLRM
from recsys.train.config import TrainJobConfig, TrainerConfig
from recsys.train.distributed import launch
from recsys.train.loop import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FEATURES = [FeatureInfo(f"C{i}", 1000) for i in range(1, 5)]


def job(tiny_dataset, **placement) -> TrainJobConfig:
    cfg = TrainJobConfig(device="cuda", trainer=TrainerConfig(max_steps=20, progress=False, tensorboard=False))
    cfg.data.path = str(tiny_dataset)
    cfg.data.batch_size = 256
    cfg.model.embedding_dim = 8
    cfg.model.bottom_mlp = [16, 8]
    cfg.model.top_mlp = [16, 1]
    cfg.placement = PlacementConfig(**placement)
    return cfg


def test_device_cuda_trains_and_evaluates(tiny_dataset, tmp_path):
    result = train(job(tiny_dataset), tmp_path / "run")
    assert result.steps == 16 and result.eval["auc"] > 0.6


def test_uvm_cache_training_reports_its_tiers_and_hit_rate(tiny_dataset, tmp_path):
    on_device = train(job(tiny_dataset), tmp_path / "device")
    cached = train(job(tiny_dataset, hot_tier="uvm_cache", cache_load_factor=0.2), tmp_path / "uvm")
    tiers = cached.memory["placement"]
    assert tiers["tier"] == "uvm_cache" and 0 < tiers["device_cache_bytes"] < tiers["host_bytes"]
    assert 0 < tiers["hit_rate"] < 1  # a 20% cache of a skewed vocabulary: some hits, some misses
    assert cached.eval["logloss"] == pytest.approx(on_device.eval["logloss"], abs=1e-5)


def test_sharded_uvm_cache_run_caches_its_shards(tiny_dataset, tmp_path):
    """A sharded run (one nccl rank: the check machine has one GPU) puts its shards in host memory
    through torchrec's fused_uvm_caching kernel and reports their cache like one process does."""
    cfg = job(tiny_dataset, hot_tier="uvm_cache", cache_load_factor=0.2)
    sharded = launch(train, cfg, tmp_path / "sharded")
    assert "uvm_cache (host memory, 0.2 of the rows cached in GPU memory)" in (tmp_path / "sharded" / "sharding_plan.txt").read_text()
    tiers = sharded.memory["placement"]
    assert tiers["tier"] == "uvm_cache" and 0 < tiers["device_cache_bytes"] < tiers["host_bytes"]
    assert 0 < tiers["hit_rate"] < 1


def batches(count: int, batch: int = 64):
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        ids = (torch.rand(len(FEATURES), batch, generator=gen) ** 3 * 1000).long()  # (F, B) skewed ranks
        kjt = KeyedJaggedTensor(keys=[f.name for f in FEATURES], values=ids.reshape(-1),  # as the loader makes it
                                lengths=torch.ones(ids.numel(), dtype=torch.int32), stride=batch,
                                length_per_key=[batch] * len(FEATURES)).to("cuda")
        out.append((torch.rand(batch, 13, generator=gen).cuda(), kjt, (torch.rand(batch, generator=gen) < 0.3).float().cuda()))
    return out


def trained(placement: PlacementConfig, data) -> tuple[torch.Tensor, float, dict[str, torch.Tensor], dict | None, dict]:
    """First-batch predictions, the last loss, the tables after training on ``data``, the tiers,
    and the embedding's state dict (taken before anything read the tables)."""
    torch.manual_seed(0)
    emb = make_embedding({"method": "full"}, FEATURES, 16, TableOptimizerConfig(), device="cuda", placement=placement)
    model = DLRM(emb, num_dense=13, config=DLRMConfig(embedding_dim=16, bottom_mlp=[32, 16], top_mlp=[32, 1])).cuda()
    opt = torch.optim.Adagrad(model.parameters(), lr=0.01)
    first = model(data[0][0], data[0][1]).detach()
    for dense, kjt, labels in data:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(dense, kjt), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {k: v.detach().clone() for k, v in emb.state_dict().items()}
    return first, float(loss), {k: v.detach().clone() for k, v in emb.lookup.table_weights().items()}, emb.tiers(), state


@pytest.mark.parametrize("placement", [dict(hot_tier="uvm_cache"), dict(hot_tier="uvm_cache", cache_algorithm="lfu"), dict(hot_tier="host")])
def test_every_gpu_placement_trains_like_device_memory(placement):
    data = batches(30)
    first, loss, tables, _, _ = trained(PlacementConfig(), data)
    other_first, other_loss, other_tables, tiers, _ = trained(PlacementConfig(cache_load_factor=0.1, **placement), data)
    assert torch.allclose(other_first, first, atol=1e-6)
    assert other_loss == pytest.approx(loss, abs=1e-4)
    for name, weight in tables.items():  # the cache is written back before the tables are read
        assert torch.allclose(other_tables[name], weight, atol=1e-5), name
    assert tiers["tier"] == placement["hot_tier"]


def test_a_uvm_cache_state_dict_holds_the_rows_its_cache_updated():
    """FBGEMM's cache holds the newest rows: the lookup writes them back before its state is
    saved, so a lookup loaded from that state has the trained tables (a checkpoint is a state dict)."""
    placement = PlacementConfig(hot_tier="uvm_cache", cache_load_factor=0.1)
    _, _, tables, _, state = trained(placement, batches(30))
    loaded = make_embedding({"method": "full"}, FEATURES, 16, TableOptimizerConfig(), device="cuda", placement=placement)
    loaded.load_state_dict(state)
    for name, weight in loaded.lookup.table_weights().items():
        assert torch.equal(weight, tables[name]), name


def assert_no_host_sync(run) -> torch.Tensor:
    run()  # warm-up (lazy initialisation may sync once)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        return run()
    finally:
        torch.cuda.set_sync_debug_mode("default")


SYNC_FREE = [{"method": "full"}, {"method": "hash", "compression": 2.0}, {"method": "qr", "collisions": 4},
             {"method": "unified", "compression": 4}, {"method": "md", "alpha": 0.3}]


@pytest.mark.parametrize("method", SYNC_FREE, ids=[m["method"] for m in SYNC_FREE])
def test_forward_makes_no_host_synchronisation(method):
    """Mixed-dimension blocks too: recsys::transform_ids_masked sizes everything from length_per_key."""
    emb = make_embedding(method, FEATURES, 16, TableOptimizerConfig(), device="cuda")
    dense, kjt, _ = batches(1)[0]
    out = assert_no_host_sync(lambda: emb(kjt).values())
    assert out.shape == (64, 4 * 16) and out.is_cuda


def test_per_feature_mixed_dimension_modules_do_synchronise():
    """What the masked op removes: the modules' frequency-block routing reads the device."""
    emb = make_embedding({"method": "md", "alpha": 0.3}, FEATURES, 16, TableOptimizerConfig(), device="cuda")
    emb.fused_transforms = None
    dense, kjt, _ = batches(1)[0]
    with pytest.raises(RuntimeError, match="synchroniz"):
        assert_no_host_sync(lambda: emb(kjt).values())


def test_triton_transform_op_equals_its_torch_version():
    from recsys_kernels.masked import masked_torch

    from tests.kernels.test_transform_ids_masked import masked_args

    for seed, max_len in [(0, 3), (1, 1), (2, 0), (3, 4)]:
        args = masked_args(seed, batch=7, max_len=max_len)
        on_gpu = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
        got = torch.ops.recsys.transform_ids_masked(*on_gpu)
        for g, w in zip(got, masked_torch(*args)):
            assert g.is_cuda and torch.equal(g.cpu(), w)
    torch.library.opcheck(torch.ops.recsys.transform_ids_masked.default, on_gpu)


@pytest.mark.parametrize("method", [{"method": "md", "alpha": 0.3}, {"method": "qr", "collisions": 4}], ids=["md", "qr"])
def test_masked_transforms_train_like_the_modules_on_the_gpu(method):
    data = batches(20)
    tables = []
    for modules in (False, True):
        torch.manual_seed(0)
        emb = make_embedding(method, FEATURES, 16, TableOptimizerConfig(), device="cuda")
        if modules:
            emb.fused_transforms = None
        for _, kjt, _ in data:
            (emb(kjt).values() ** 2).sum().backward()
        tables.append({k: v.detach().clone() for k, v in emb.lookup.table_weights().items()})
    for name, weight in tables[0].items():
        assert torch.allclose(weight, tables[1][name], atol=1e-5), name


def test_dlrm_forward_makes_no_host_synchronisation():
    emb = make_embedding({"method": "full"}, FEATURES, 16, TableOptimizerConfig(), device="cuda")
    model = DLRM(emb, num_dense=13, config=DLRMConfig(embedding_dim=16, bottom_mlp=[32, 16], top_mlp=[32, 1])).cuda()
    dense, kjt, _ = batches(1)[0]
    assert assert_no_host_sync(lambda: model(dense, kjt)).shape == (64,)


def test_dense_adagrad_updates_every_parameter_in_a_few_multi_tensor_kernels():
    """torch has no fused Adagrad for CUDA: its foreach form must run, not one update per
    parameter (an explicit fused=False turned foreach off too: 160 launches a step for md)."""
    from recsys.train.loop import make_dense_optimizer

    emb = make_embedding({"method": "md", "alpha": 0.3}, FEATURES, 16, TableOptimizerConfig(), device="cuda")
    model = DLRM(emb, num_dense=13, config=DLRMConfig(embedding_dim=16, bottom_mlp=[32, 16], top_mlp=[32, 1])).cuda()
    optimizer = make_dense_optimizer(model, "adagrad", 0.01)
    dense, kjt, labels = batches(1)[0]
    torch.nn.functional.binary_cross_entropy_with_logits(model(dense, kjt), labels).backward()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        optimizer.step()
    ops = {event.key: event.count for event in prof.key_averages()}
    assert ops.get("aten::_foreach_addcdiv_", 0) >= 1 and "aten::addcdiv_" not in ops, ops
