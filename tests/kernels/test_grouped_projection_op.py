"""recsys::grouped_projection: a naive reference forward and backward (dims on the vector
path and off it, padding, features without a head or a column), opcheck, torch.compile, bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

recsys_kernels = pytest.importorskip("recsys_kernels", reason="kernels/ is not installed (scripts/setup.sh installs it)")
pytestmark = pytest.mark.skipif(not recsys_kernels.available(), reason=recsys_kernels.unavailable_reason())


def layout(seed: int, features: int, width: int, dim: int, batch: int, spare: int = 3):
    """Random x, columns, heads and projection: each feature a head (or none) and 0..width
    narrow columns; heads at the front of x, narrow columns at shuffled distinct columns after
    them, ``spare`` columns unread."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, width + 1, (features,), generator=g).tolist()
    has_head = (torch.rand(features, generator=g) < 0.7).tolist()
    head_columns = dim * sum(has_head)
    total = head_columns + sum(counts) + spare
    columns = torch.full((features, width), -1, dtype=torch.int64)
    heads = torch.full((features,), -1, dtype=torch.int64)
    head_starts = iter(range(0, head_columns, dim))
    free = iter((head_columns + torch.randperm(total - head_columns, generator=g)).tolist())
    for f in range(features):
        if has_head[f]:
            heads[f] = next(head_starts)
        for w in range(counts[f]):
            columns[f, w] = next(free)
    x = torch.randn(batch, total, generator=g)
    projection = torch.randn(features, width, dim, generator=g)
    return x, columns, heads, projection


def naive(x, columns, heads, projection):
    features, width, dim = projection.shape
    x64, p64 = x.double(), projection.double()
    out = torch.zeros(x.shape[0], features, dim, dtype=torch.float64) + 0 * (x64.sum() + p64.sum())  # a graph even if empty
    for f in range(features):
        if heads[f] >= 0:
            out[:, f] += x64[:, heads[f] : heads[f] + dim]
        for w in range(width):
            if columns[f, w] >= 0:
                out[:, f] += x64[:, columns[f, w], None] * p64[f, w]
    return out.reshape(x.shape[0], features * dim)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    features=st.integers(1, 5),
    width=st.integers(1, 19),
    dim=st.sampled_from([4, 8, 12, 16, 32]),  # 8, 16, 32: the vector path; 4, 12: the scalar one
    batch=st.integers(1, 600),  # past one task (256 rows): several tasks' projection gradients are summed
)
def test_forward_and_backward_match_the_naive_reference(seed, features, width, dim, batch):
    x, columns, heads, projection = layout(seed, features, width, dim, batch)
    x.requires_grad_(True)
    projection.requires_grad_(True)
    out = recsys_kernels.grouped_projection(x, columns, heads, projection)
    x64 = x.detach().double().requires_grad_(True)
    p64 = projection.detach().double().requires_grad_(True)
    want = naive(x64, columns, heads, p64)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-4)
    probe = torch.randn(want.shape, dtype=torch.float64)
    got_x, got_p = torch.autograd.grad((out.double() * probe).sum(), [x, projection])
    want_x, want_p = torch.autograd.grad((want * probe).sum(), [x64, p64])
    torch.testing.assert_close(got_x.double(), want_x, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_p.double(), want_p, rtol=1e-5, atol=1e-3)
    unread = torch.ones(x.shape[1], dtype=torch.bool)  # columns no feature reads get gradient 0
    unread[columns[columns >= 0]] = False
    for h in heads[heads >= 0].tolist():
        unread[h : h + projection.shape[2]] = False
    assert got_x[:, unread].abs().sum() == 0
    assert got_p[columns < 0].abs().sum() == 0  # nor do projection rows at padding


def test_opcheck():
    for seed, (features, width, dim, batch) in enumerate([(3, 5, 8, 7), (2, 4, 12, 3), (4, 9, 16, 300)]):
        x, columns, heads, projection = layout(seed, features, width, dim, batch)
        torch.library.opcheck(
            torch.ops.recsys.grouped_projection.default, (x.requires_grad_(True), columns, heads, projection.requires_grad_(True))
        )


def test_compiles_fullgraph():
    torch._dynamo.reset()
    x, columns, heads, projection = layout(1, 3, 6, 16, 10)
    compiled = torch.compile(recsys_kernels.grouped_projection, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, columns, heads, projection), recsys_kernels.grouped_projection(x, columns, heads, projection))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a["columns"].__setitem__((1, 0), 16), "column 16 of x is read twice"),
        (lambda a: a["columns"].__setitem__((1, 0), 3), "column 3 of x is read twice"),  # a head's column
        (lambda a: a["columns"].__setitem__((0, 0), -1), r"columns\[0, 1\] = 17 follows padding"),
        (lambda a: a["columns"].__setitem__((0, 0), 20), r"columns\[0, 0\] = 20 is outside x's 20 columns"),
        (lambda a: a["heads"].__setitem__(1, 14), r"heads\[1\] = 14 does not start a block of 8"),
        (lambda a: a.update(x=a["x"].double()), "x must be a 2-d float32 tensor"),
        (lambda a: a.update(columns=a["columns"][:, :1]), r"columns must be int64 of shape \(F, W\) = \(2, 2\)"),
    ],
)
def test_bad_input_is_named(change, message):
    # heads at columns 0..7 and 8..15, narrow columns 16, 17 (feature 0) and 18, 19 (feature 1)
    args = dict(x=torch.randn(3, 20), columns=torch.tensor([[16, 17], [18, 19]]), heads=torch.tensor([0, 8]),
                projection=torch.randn(2, 2, 8))
    recsys_kernels.grouped_projection(**args)  # valid as it stands
    change(args)
    with pytest.raises(RuntimeError, match=message):
        recsys_kernels.grouped_projection(**args)
