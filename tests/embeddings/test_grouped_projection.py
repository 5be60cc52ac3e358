"""The batched mixed-dimension projection (recsys::grouped_projection and its torch form) equals
the per-feature combiners, forward and backward."""

import pytest
import torch

from recsys.embeddings.build import make_embedding
from recsys.embeddings.grouped_projection import GroupedProjection
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.specs import TableOptimizerConfig

FEATURES = [FeatureInfo(name, n) for name, n in {"C1": 5000, "C2": 37, "C3": 20000, "C4": 3}.items()]
# C3 with base_dim 8: no block at the model dim (its every block is projected, no head)
CASES = {
    "md": {"method": "md", "alpha": 0.5, "num_blocks": 4},
    "md_per_table": {"method": "md", "alpha": 0.4, "variant": "per_table"},  # a feature with no table at all
    "md_without_head": {"method": "md", "alpha": 0.5, "num_blocks": 4, "overrides": {"C3": {"method": "md", "base_dim": 8}}},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_grouped_projection_equals_the_per_feature_combiners(name):
    torch.manual_seed(0)
    emb = make_embedding(CASES[name], FEATURES, 16, TableOptimizerConfig())
    grouped = emb.grouped_projection
    assert isinstance(grouped, GroupedProjection)
    assert grouped.all_heads == (name == "md")
    for m in emb.feature_modules:  # non-trivial projections (and a gradient for each)
        m.combiner.projection.data.normal_()
    x = torch.randn(6, sum(emb.column_widths), requires_grad=True)
    lengths = torch.ones(6, dtype=torch.int64)
    blocks = torch.split(x, emb.column_widths, dim=1)
    reference = torch.cat([m.combiner(blocks[emb.column_order[f]], lengths) for f, m in enumerate(emb.feature_modules)], dim=1)
    weights = [x] + [m.combiner.projection for m in emb.feature_modules if m.combiner.projection.numel()]
    probe = torch.randn_like(reference)
    want = torch.autograd.grad((reference * probe).sum(), weights)
    for form in (grouped, grouped.torch_forward):  # the op where the kernels are built, and the torch form
        got_out = form(x)
        got = torch.autograd.grad((got_out * probe).sum(), weights)
        torch.testing.assert_close(got_out, reference)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)


def test_collection_forward_uses_it_and_matches_the_per_feature_path():
    torch.manual_seed(0)
    emb = make_embedding(CASES["md"], FEATURES, 16, TableOptimizerConfig())
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    ids = torch.tensor([3, 4000, 1, 36, 7, 19999, 0, 2])
    batch = KeyedJaggedTensor(keys=[f.name for f in FEATURES], values=ids, lengths=torch.ones(8, dtype=torch.int32), stride=2)
    grouped_out = emb(batch).values()
    emb.grouped_projection = None
    torch.testing.assert_close(grouped_out, emb(batch).values())


def test_it_refuses_a_combiner_that_is_not_a_projected_sum():
    emb = make_embedding({"method": "hash", "compression": 4}, FEATURES, 16, TableOptimizerConfig())
    assert emb.grouped_projection is None
    with pytest.raises(ValueError, match="ProjectedSum"):
        GroupedProjection([m.combiner for m in emb.feature_modules], [0, 16, 32, 48], [16] * 4)
