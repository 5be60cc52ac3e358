"""recsys::dot_interaction: a naive reference forward and backward (widths on and off whole
vectors of 8, with and without the constant vector, past one task's rows), the DLRM module's torch
form, opcheck, torch.compile, bad input, and a serving model that stays free of the op."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

recsys_kernels = pytest.importorskip("recsys_kernels", reason="kernels/ is not installed (scripts/setup.sh installs it)")
pytestmark = pytest.mark.skipif(not recsys_kernels.available(), reason=recsys_kernels.unavailable_reason())


def inputs(seed: int, batch: int, features: int, dim: int, constant: bool):
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch, dim, generator=g)
    sparse = torch.randn(batch, features, dim, generator=g)
    return dense, sparse, (torch.randn(dim, generator=g) if constant else None)


def naive(dense, sparse, constant):
    """Every v_i . v_j, i < j, row by row, in float64."""
    vectors = [dense] + [sparse[:, f] for f in range(sparse.shape[1])] + ([constant.expand_as(dense)] if constant is not None else [])
    pairs = [(vectors[i] * vectors[j]).sum(1) for i in range(len(vectors)) for j in range(i + 1, len(vectors))]
    out = torch.cat([dense, torch.stack(pairs, 1) if pairs else dense[:, :0]], 1)  # one vector: no pairs
    return out + 0 * sparse.sum()  # sparse in the graph even with F = 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 600),  # past one task (256 rows): several tasks' constant gradients are summed
    features=st.integers(0, 62),  # V = F + 1 (+ 1) up to the op's 64: 1 to 8 vectors of 8 lanes
    dim=st.sampled_from([1, 3, 8, 16, 33]),
    constant=st.booleans(),
)
def test_forward_and_backward_match_the_naive_reference(seed, batch, features, dim, constant):
    dense, sparse, const = inputs(seed, batch, features, dim, constant)
    leaves = [t.requires_grad_(True) for t in (dense, sparse, const) if t is not None]
    out = recsys_kernels.dot_interaction(dense, sparse, const)
    leaves64 = [t.detach().double().requires_grad_(True) for t in leaves]
    want = naive(leaves64[0], leaves64[1], leaves64[2] if constant else None)
    assert out.shape == want.shape
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-4)
    probe = torch.randn(want.shape, dtype=torch.float64)
    got = torch.autograd.grad((out.double() * probe).sum(), leaves)
    expected = torch.autograd.grad((want * probe).sum(), leaves64)
    for g, w in zip(got, expected):
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("constant_dim", [0, 16])
def test_the_dlrm_module_computes_the_same_through_the_op_and_through_torch(constant_dim):
    from recsys.models.dlrm import DotInteraction

    module = DotInteraction(27, constant_dim)
    assert module.fusable
    dense, sparse, _ = inputs(0, 300, 26, 16, False)
    probe = torch.randn(300, module.output_dim(16))
    results = []
    for fn in (module.fused, module.forward):
        d, s = dense.clone().requires_grad_(True), sparse.clone().requires_grad_(True)
        module.zero_grad()
        out = fn(d, s)
        (out * probe).sum().backward()
        results.append([out, d.grad, s.grad] + ([module.constant.grad.clone()] if constant_dim else []))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_a_bf16_dense_vector_enters_the_op_as_float32():
    from recsys.models.dlrm import DotInteraction

    module = DotInteraction(5, 8)
    dense, sparse, _ = inputs(1, 10, 4, 8, False)
    out = module.fused(dense.bfloat16(), sparse)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, module(dense.bfloat16().float(), sparse))


def test_opcheck():
    for seed, (batch, features, dim, constant) in enumerate([(7, 3, 8, True), (3, 9, 5, False), (300, 26, 16, True)]):
        dense, sparse, const = inputs(seed, batch, features, dim, constant)
        args = (dense.requires_grad_(True), sparse.requires_grad_(True), const.requires_grad_(True) if constant else None)
        torch.library.opcheck(torch.ops.recsys.dot_interaction.default, args)


def test_compiles_fullgraph():
    torch._dynamo.reset()
    dense, sparse, const = inputs(2, 10, 5, 16, True)
    compiled = torch.compile(recsys_kernels.dot_interaction, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(dense, sparse, const), recsys_kernels.dot_interaction(dense, sparse, const))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(dense=a["dense"].double()), r"dense must be a \(B, D\) float32 tensor"),
        (lambda a: a.update(sparse=a["sparse"][:2]), r"sparse must be a \(B, F, D\) float32 tensor with dense's B = 3"),
        (lambda a: a.update(sparse=a["sparse"][:, :, :4]), r"with dense's B = 3 and D = 8, got \[3, 5, 4\]"),
        (lambda a: a.update(constant=torch.randn(7)), "constant must hold D = 8 float32 values"),
        (lambda a: a.update(sparse=torch.randn(3, 63, 8)), "65 vectors per row; the kernel takes at most 64"),
    ],
)
def test_bad_input_is_named(change, message):
    args = dict(dense=torch.randn(3, 8), sparse=torch.randn(3, 5, 8), constant=torch.randn(8))
    recsys_kernels.dot_interaction(**args)  # valid as it stands
    change(args)
    with pytest.raises(RuntimeError, match=message):
        recsys_kernels.dot_interaction(**args)


def test_more_vectors_than_the_kernel_takes_run_the_torch_form():
    from recsys.models.dlrm import DotInteraction

    module = DotInteraction(70)
    assert not module.fusable
    dense, sparse, _ = inputs(3, 4, 69, 8, False)
    torch.testing.assert_close(module.fused(dense, sparse), module(dense, sparse))


def test_a_scripted_interaction_holds_no_recsys_op():
    """Serving scripts the module's forward (torch ops only): an artifact loads with torch alone."""
    from recsys.models.dlrm import DotInteraction

    scripted = torch.jit.script(DotInteraction(27, 16))
    assert "recsys::" not in str(scripted.inlined_graph)
