"""The single-GPU path (skipped without CUDA; scripts/gpu_check.sh runs these on a GPU machine):
training and evaluation on the device, and a forward pass that never waits for the device."""

from __future__ import annotations

import pytest
import torch

from recsys.embeddings.build import make_embedding
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.specs import TableOptimizerConfig
from recsys.train.config import TrainJobConfig, TrainerConfig
from recsys.train.loop import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_device_cuda_trains_and_evaluates(tiny_dataset, tmp_path):
    cfg = TrainJobConfig(device="cuda", trainer=TrainerConfig(max_steps=20, progress=False, tensorboard=False))
    cfg.data.path = str(tiny_dataset)
    cfg.data.batch_size = 256
    cfg.model.embedding_dim = 8
    cfg.model.bottom_mlp = [16, 8]
    cfg.model.top_mlp = [16, 1]
    result = train(cfg, tmp_path / "run")
    assert result.steps == 16 and result.eval["auc"] > 0.6


@pytest.mark.parametrize("method", [{"method": "full"}, {"method": "hash", "compression": 2.0}])
def test_forward_makes_no_host_synchronisation(method):
    features = [FeatureInfo(f"C{i}", 1000) for i in range(1, 5)]
    emb = make_embedding(method, features, 16, TableOptimizerConfig(), device="cuda")
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    kjt = KeyedJaggedTensor(
        keys=[f.name for f in features],
        values=torch.randint(0, 1000, (4 * 64,), device="cuda"),
        lengths=torch.ones(4 * 64, dtype=torch.int32, device="cuda"),
        stride=64,
    )
    emb(kjt)  # warm-up (lazy initialisation may sync once)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = emb(kjt).values()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == (64, 4 * 16) and out.is_cuda
