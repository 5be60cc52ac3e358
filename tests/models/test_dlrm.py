import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

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


KAGGLE_OPTIONS = {"fm_component": True, "first_order": True, "dense_norm": True, "bottom_last_relu": False}


class FixedEmbedding(torch.nn.Module):
    """Stands in for an embedding module: returns ``vectors`` (B, F, D) whatever the ids."""

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.vectors = vectors
        self.features = [f"C{i}" for i in range(vectors.shape[1])]
        self.output_dims = [vectors.shape[2]] * vectors.shape[1]

    def forward(self, sparse) -> KeyedTensor:
        return KeyedTensor(self.features, self.output_dims, self.vectors.flatten(1))


def test_dot_interaction_with_a_constant_vector_adds_its_pairs():
    torch.manual_seed(0)
    dense, sparse = torch.randn(3, 4), torch.randn(3, 5, 4)
    interaction = DotInteraction(6, constant_dim=4)
    out = interaction(dense, sparse)
    vectors = torch.cat([dense.unsqueeze(1), sparse, interaction.constant.expand(3, 1, 4)], dim=1)
    naive = [(vectors[:, i] * vectors[:, j]).sum(1) for i in range(7) for j in range(i + 1, 7)]
    torch.testing.assert_close(out, torch.cat([dense, torch.stack(naive, dim=1)], dim=1))
    assert out.shape == (3, interaction.output_dim(4)) == (3, 4 + 21)


def test_fm_component_adds_the_sum_of_the_pairwise_products_to_the_mlp_logit():
    torch.manual_seed(0)
    vectors = torch.randn(5, 3, 8)
    model = DLRM(FixedEmbedding(vectors), 13, DLRMConfig(8, [16, 8], [16, 1], fm_component=True)).eval()
    dense = torch.rand(5, 13)
    dense_vec = model.bottom(dense)
    stacked = torch.cat([dense_vec.unsqueeze(1), vectors], dim=1)  # (B, 4, D)
    pair_sum = sum((stacked[:, i] * stacked[:, j]).sum(1) for i in range(4) for j in range(i + 1, 4))
    mlp_logit = torch.nn.Sequential(*model.top)(model.interaction(dense_vec, vectors)).squeeze(1)
    torch.testing.assert_close(model(dense, None), mlp_logit + pair_sum)


def test_bottom_options_normalise_the_dense_inputs_and_let_the_dense_vector_be_negative():
    torch.manual_seed(0)
    dense = torch.rand(64, 13) * 10
    reference = DLRM(FixedEmbedding(torch.randn(64, 3, 8)), 13, DLRMConfig(8, [16, 8], [16, 1]))
    assert (reference.bottom(dense) >= 0).all()
    model = DLRM(FixedEmbedding(torch.randn(64, 3, 8)), 13, DLRMConfig(8, [16, 8], [16, 1], **KAGGLE_OPTIONS))
    assert isinstance(model.bottom[0], torch.nn.BatchNorm1d)
    assert (model.bottom(dense) < 0).any()
    normalised = model.bottom[0](dense)  # training mode: this batch's statistics
    torch.testing.assert_close(normalised.mean(0), torch.zeros(13), atol=1e-5, rtol=0)


def test_kaggle_options_give_rare_ids_embeddings_fm_sized_gradients_at_initialisation():
    """The cause of the DLRM's quality gap (recsys.models.dlrm's docstring): without a direct
    path, an embedding's gradient passes through the top MLP's small initial weights."""
    torch.manual_seed(0)
    vectors = (torch.rand(256, 26, 16) * 2 - 1) * 1e-3  # (B, F, D): large tables' init, +-1/sqrt(rows)
    dense = torch.log1p(torch.rand(256, 13) * 100)

    def embedding_gradient(options: dict) -> float:
        embedding = FixedEmbedding(vectors.clone().requires_grad_())
        DLRM(embedding, 13, DLRMConfig(**options))(dense, None).sum().backward()
        return embedding.vectors.grad.norm(dim=2).mean().item()

    assert embedding_gradient(KAGGLE_OPTIONS) > 50 * embedding_gradient({})


def _kaggle_like(full_tables, precision: str) -> DLRM:
    features = {f"C{i}": 20 for i in range(1, 4)}
    torch.manual_seed(0)
    config = DLRMConfig(8, [16, 8], [32, 16, 1], fm_component=True, first_order=True, dense_norm=True,
                        bottom_last_relu=False, dense_precision=precision)
    return DLRM(full_tables(features, 8), 13, config)


def _batch(rows: int = 64):
    kjt = KeyedJaggedTensor(keys=["C1", "C2", "C3"], values=torch.randint(0, 20, (3 * rows,)),
                            lengths=torch.ones(3 * rows, dtype=torch.int32), stride=rows)
    return torch.rand(rows, 13), kjt


def test_bf16_dense_layers_compute_in_bfloat16_and_give_fp32_logits_near_fp32s(full_tables):
    exact, mixed = _kaggle_like(full_tables, "fp32"), _kaggle_like(full_tables, "bf16")
    mixed.load_state_dict(exact.state_dict())
    seen = []
    mixed.top[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    dense, kjt = _batch()
    mixed_logits = mixed(dense, kjt)
    mixed_logits.sum().backward()
    assert seen == [torch.bfloat16] and mixed_logits.dtype == torch.float32
    assert mixed.top[0].weight.dtype == torch.float32 and mixed.top[0].weight.grad.dtype == torch.float32
    exact_logits = exact(dense, kjt)
    assert not torch.equal(mixed_logits, exact_logits)  # it did round
    torch.testing.assert_close(mixed_logits, exact_logits, rtol=0.02, atol=0.02)  # bfloat16: 8 mantissa bits


def test_dense_precision_auto_follows_the_hardware_and_bf16_without_it_warns(monkeypatch, caplog):
    from recsys.models import dlrm

    assert dlrm.computes_bf16("auto", "cpu") is dlrm.native_bf16(torch.device("cpu"))
    assert dlrm.computes_bf16("fp32", "cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)  # a CPU without BF16 instructions
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert dlrm.computes_bf16("auto", "cpu") is False
    with caplog.at_level("WARNING"):
        assert dlrm.computes_bf16("bf16", "cpu") is True
    assert "model.dense_precision=bf16" in caplog.text and "slower than in fp32" in caplog.text
    with pytest.raises(ValueError, match="'fp16' is not a valid DensePrecision"):
        dlrm.computes_bf16("fp16", "cpu")
