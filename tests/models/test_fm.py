import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.models.fm import FactorizationMachine


def test_fm_logit_is_bias_linear_and_every_pairwise_product(full_tables):
    torch.manual_seed(0)
    features = {f"C{i}": 20 for i in range(1, 4)}
    fm = FactorizationMachine(full_tables(features, 8), num_dense=2, dim=8).eval()
    kjt = KeyedJaggedTensor(keys=list(features), values=torch.randint(0, 20, (3 * 5,)),
                            lengths=torch.ones(15, dtype=torch.int32), stride=5)
    dense = torch.rand(5, 2)
    logits = fm(dense, kjt)

    # Rendle's definition, pair by pair
    y = fm.dense_norm(dense)
    e = fm.embedding(kjt).values().view(5, 3, 8)
    vectors = [e[:, i] for i in range(3)] + [y[:, j:j + 1] * fm.dense_vectors[j] for j in range(2)]
    vectors.append(fm.constant.expand(5, 8))
    pairs = sum((vectors[i] * vectors[j]).sum(1) for i in range(6) for j in range(i + 1, 6))
    torch.testing.assert_close(logits, fm.linear(y).squeeze(1) + pairs)

    logits.sum().backward()
    assert fm.dense_vectors.grad.abs().sum() > 0 and fm.constant.grad.abs().sum() > 0
