import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.config import DLRMConfig
from recsys.models.dlrm import DLRM, DotInteraction


def test_dot_interaction_matches_naive_pairwise_products():
    torch.manual_seed(0)
    dense, sparse = torch.randn(3, 4), torch.randn(3, 5, 4)
    out = DotInteraction(6)(dense, sparse)
    vectors = torch.cat([dense.unsqueeze(1), sparse], dim=1)
    naive = [vectors[:, i] @ vectors[:, j].T for i in range(6) for j in range(i + 1, 6)]
    expected = torch.cat([dense, torch.stack([m.diagonal() for m in naive], dim=1)], dim=1)
    torch.testing.assert_close(out, expected)
    assert out.shape == (3, 4 + 15)


def test_config_rejects_mismatched_layers():
    with pytest.raises(ValueError, match="bottom_mlp must end at"):
        DLRMConfig(embedding_dim=16, bottom_mlp=[64, 8], top_mlp=[8, 1])
    with pytest.raises(ValueError, match="top_mlp must end at 1"):
        DLRMConfig(embedding_dim=8, bottom_mlp=[8], top_mlp=[8, 2])


def test_dlrm_forward_and_backward_shapes(full_tables):
    features = {f"C{i}": 20 for i in range(1, 4)}
    model = DLRM(full_tables(features, 8), 13, DLRMConfig(8, [16, 8], [16, 1]))
    kjt = KeyedJaggedTensor(
        keys=list(features), values=torch.randint(0, 20, (3 * 5,)), lengths=torch.ones(15, dtype=torch.int32), stride=5
    )
    logits = model(torch.rand(5, 13), kjt)
    assert logits.shape == (5,)
    logits.sum().backward()
    assert model.bottom[0].weight.grad is not None
    # interaction width: D + (F+1)F/2 = 8 + 6
    assert model.top[0].in_features == 8 + 6


def test_dlrm_rejects_embedding_of_other_dim(full_tables):
    with pytest.raises(ValueError, match="DLRM expects 16"):
        DLRM(full_tables({"C1": 5}, 8), 13, DLRMConfig())
