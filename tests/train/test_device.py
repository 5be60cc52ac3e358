import pytest
import torch

from recsys.train.loop import resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_a_gpu_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="device=cuda: no CUDA device"):
        resolve_device("cuda", None)


def test_cpu_device_resolves():
    assert resolve_device("cpu", None) == torch.device("cpu")
