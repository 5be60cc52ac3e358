"""recsys::transform_ids_masked: the naive reference with dropped ids as weight-0 samples, its
Triton kernels (through Triton's CPU interpreter), opcheck, static shapes under torch.compile, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels.test_transform_ids import K, example, naive_row

recsys_kernels = pytest.importorskip("recsys_kernels", reason="kernels/ is not installed (scripts/setup.sh installs it)")


def sizes(values, lengths, batch, params, aux):
    """ids_per_slot and bags_per_slot, as a KJT's length_per_key gives them."""
    per_feature = lengths.view(-1, batch).sum(dim=1).tolist()
    ids = [per_feature[f] for f in params[:, 1].tolist()]
    return ids, [n if per_id else batch for n, per_id in zip(ids, params[:, 2].tolist())]


def masked_args(seed=0, batch=5, max_len=3):
    values, lengths, batch, params, aux = example(seed, batch, max_len)
    params = params[params[:, 2].eq(0) | ~torch.isin(params[:, 0], torch.tensor([K.BLOCK, K.KEEP]))]  # per-id slots keep all
    return (values, lengths, params, aux, batch, *sizes(values, lengths, batch, params, aux))


def naive_masked(values, lengths, params, aux, batch, ids_per_slot, bags_per_slot):
    """Every id of a slot's feature, in order; dropped ones as row 0 with weight 0."""
    values, lengths, aux = values.tolist(), lengths.tolist(), aux.tolist()
    starts = [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    rows, weights, bag_lengths = [], [], []
    for kind, feature, per_id, a, b in params.tolist():
        for bag in range(batch):
            ids = values[starts[feature * batch + bag] : starts[feature * batch + bag + 1]]
            for kept, row in (naive_row(kind, a, b, aux, x) for x in ids):
                rows.append(row if kept else 0)
                weights.append(float(kept))
            bag_lengths += [1] * len(ids) if per_id else [len(ids)]
    return rows, [sum(bag_lengths[:i]) for i in range(len(bag_lengths) + 1)], weights


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 6), max_len=st.integers(0, 4))
def test_matches_the_naive_reference(seed, batch, max_len):
    args = masked_args(seed, batch, max_len)
    rows, offsets, weights = recsys_kernels.transform_ids_masked(*args)
    want = naive_masked(*args)
    assert rows.tolist() == want[0]
    assert offsets.tolist() == want[1]
    assert weights.tolist() == want[2]
    assert rows.numel() == sum(args[5]) and offsets.numel() == sum(args[6]) + 1  # the sizes the host gave


def test_weight_one_ids_are_what_transform_ids_keeps():
    """Dropping the weight-0 ids gives recsys::transform_ids' output exactly (pooled slots)."""
    values, lengths, params, aux, batch, ids, bags = masked_args(seed=7)
    pooled = params[params[:, 2] == 0]
    rows, offsets, weights = recsys_kernels.transform_ids_masked(values, lengths, pooled, aux, batch, *sizes(values, lengths, batch, pooled, aux))
    kept_before = torch.cat([torch.zeros(1), weights.cumsum(0)]).long()  # kept ids before each position
    want = recsys_kernels.transform_ids(values, lengths, batch, pooled, aux)
    assert torch.equal(rows[weights == 1], want[0])
    assert torch.equal(kept_before[offsets], want[1])


def test_opcheck():
    for seed, max_len in [(0, 3), (1, 1), (2, 0)]:
        torch.library.opcheck(torch.ops.recsys.transform_ids_masked.default, masked_args(seed, max_len=max_len))


def test_compiles_with_static_shapes():
    torch._dynamo.reset()
    args = masked_args(3)
    compiled = torch.compile(recsys_kernels.transform_ids_masked, fullgraph=True, backend="eager")
    for got, want in zip(compiled(*args), recsys_kernels.transform_ids_masked(*args)):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: (a[0].neg() - 1, *a[1:]), "negative id"),
        (lambda a: (a[0], a[1], a[2].clone().index_put_((torch.tensor([7]), torch.tensor([4])), torch.tensor(2)), *a[3:]),
         "beyond the rows of its slot's map"),
        (lambda a: (a[0], a[1], a[2].clone().index_put_((torch.tensor([1]), torch.tensor([3])), torch.tensor(0)), *a[3:]),
         "non-positive modulus"),
        (lambda a: (*a[:5], [n + 1 for n in a[5]], a[6]), "but ids_per_slot="),
    ],
)
def test_bad_input_is_named(change, message):
    with pytest.raises(RuntimeError if "ids_per_slot" not in message else ValueError, match=message):
        recsys_kernels.transform_ids_masked(*change(masked_args()))


@pytest.mark.slow
def test_triton_kernels_under_the_interpreter():
    """The CUDA kernels (recsys_kernels.triton_masked) through Triton's CPU interpreter, which must
    be on before Triton is first imported: tests/kernels/triton_interpreted.py in a fresh process."""
    pytest.importorskip("triton", reason="Triton is not installed (scripts/setup.sh installs it)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).with_name("triton_interpreted.py"))],
                          cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout
