import pytest
import torch

from recsys.train.loop import resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_a_gpu_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="device=cuda: no CUDA device"):
        resolve_device("cuda", None)


def test_cpu_device_resolves():
    assert resolve_device("cpu", None) == torch.device("cpu")


@pytest.mark.parametrize("kind", ["adagrad", "sgd", "adam"])
def test_dense_optimizers_fuse_where_torch_has_the_kernel_and_build_unfused_elsewhere(kind):
    """torch's fused Adagrad has no CUDA kernel (asking for it on a GPU raised, seen on an H200):
    the optimizer fuses only on the devices listed for it and builds unfused anywhere else, leaving
    torch free to take its multi-tensor form there."""
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.plan import FeatureInfo
    from recsys.embeddings.specs import TableOptimizerConfig
    from recsys.models.config import DLRMConfig
    from recsys.models.dlrm import DLRM
    from recsys.train.loop import FUSED_DEVICES, make_dense_optimizer

    assert "cpu" in FUSED_DEVICES[kind] and ("cuda" in FUSED_DEVICES[kind]) == (kind != "adagrad")
    embedding = make_embedding({"method": "md", "budget": 0.5}, [FeatureInfo(f"C{i}", 50) for i in range(1, 4)], 8, TableOptimizerConfig())
    model = DLRM(embedding, num_dense=13, config=DLRMConfig(8, [16, 8], [16, 1]))
    assert make_dense_optimizer(model, kind, 0.01).defaults["fused"] is True
    unfused = make_dense_optimizer(model.to("meta"), kind, 0.01)  # a device with no fused kernel
    assert not unfused.defaults["fused"] and unfused.defaults["foreach"] is None  # torch picks its foreach form
