"""recsys::transform_ids against a naive per-id reference, torch.library.opcheck, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.embeddings.hash_functions import hash_to_rows

recsys_kernels = pytest.importorskip("recsys_kernels", reason="kernels/ is not installed (scripts/setup.sh installs it)")
K = recsys_kernels.SlotKind

pytestmark = pytest.mark.skipif(not recsys_kernels.available(), reason=recsys_kernels.unavailable_reason())

NO_END = 2**63 - 1


def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def naive_row(kind, a, b, aux, x):
    """(kept, row) of one id, in plain Python integers (MurmurHash3 fmix32 written out)."""
    if kind == K.IDENTITY:
        return True, x
    if kind == K.MODULO:
        return True, x % a
    if kind == K.HASH:
        h = fmix32((x & 0xFFFFFFFF) ^ a)
        return True, fmix32(h ^ (((x >> 32) + a) & 0xFFFFFFFF)) % b
    if kind == K.DIGIT:
        return True, (x // a) % b if b else x // a
    if kind == K.REMAP:
        return True, aux[a + x]
    if kind == K.BLOCK:
        return a <= x < b, x - a
    if kind == K.KEEP:
        return aux[a + x] != 0, x
    raise AssertionError(kind)


def naive_transform(values, lengths, batch, params, aux):
    values, lengths, aux = values.tolist(), lengths.tolist(), aux.tolist()
    bag_ids, at = [], 0
    for n in lengths:
        bag_ids.append(values[at : at + n])
        at += n
    out, bag_lengths, bags_per_slot, id_bags = [], [], [], []
    for kind, feature, per_id, a, b in params.tolist():
        emitted = 0
        for bag in range(batch):
            kept = [row for ok, row in (naive_row(kind, a, b, aux, x) for x in bag_ids[feature * batch + bag]) if ok]
            out += kept
            id_bags += [bag] * len(kept)
            bag_lengths += [1] * len(kept) if per_id else [len(kept)]
            emitted += len(kept)
        bags_per_slot.append(emitted if per_id else batch)
    offsets = np.concatenate([[0], np.cumsum(bag_lengths, dtype=np.int64)])
    return out, offsets.tolist(), bags_per_slot, id_bags


def example(seed=0, batch=5, max_len=3, sizes=(40, 7, 3000)):
    """A multi-hot batch of three features, a slot of every kind, and runs of block slots."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, max_len + 1, (len(sizes) * batch,), generator=g, dtype=torch.int32)
    per_feature = lengths.view(len(sizes), batch).sum(dim=1).tolist()
    values = torch.cat([torch.randint(0, n, (count,), generator=g) for n, count in zip(sizes, per_feature)])
    remap = torch.randint(0, 5, (sizes[1],), generator=g)
    keep = torch.randint(0, 2, (sizes[0],), generator=g)
    aux = torch.cat([remap, keep])
    params = torch.tensor(
        [
            [K.IDENTITY, 0, 0, 0, 0],
            [K.MODULO, 2, 0, 17, 0],
            [K.HASH, 2, 0, 0x9E3779B9, 101],
            [K.HASH, 0, 1, 12345, 7],
            [K.DIGIT, 2, 1, 64, 0],
            [K.DIGIT, 2, 1, 8, 8],
            [K.DIGIT, 2, 0, 1, 8],
            [K.REMAP, 1, 0, 0, sizes[1]],
            [K.BLOCK, 0, 0, 0, 4],
            [K.BLOCK, 0, 1, 4, 20],
            [K.BLOCK, 0, 0, 20, NO_END],
            [K.KEEP, 0, 0, sizes[1], sizes[0]],
            [K.KEEP, 0, 1, sizes[1], sizes[0]],
            # runs of pooled blocks of one feature, which the op reads as one unit: overlapping
            # ranges (an id in two blocks), and ranges with a gap (ids in no block)
            [K.BLOCK, 1, 0, 0, 3],
            [K.BLOCK, 1, 0, 2, 6],
            [K.BLOCK, 2, 0, 0, 100],
            [K.BLOCK, 2, 0, 500, 2000],
            [K.BLOCK, 2, 0, 2000, NO_END],
        ],
        dtype=torch.int64,
    )
    return values, lengths, batch, params, aux


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 6), max_len=st.integers(0, 4))
def test_matches_the_naive_reference(seed, batch, max_len):
    args = example(seed, batch, max_len)
    values, offsets, bags_per_slot, id_bags = recsys_kernels.transform_ids(*args)
    want = naive_transform(*args)
    assert values.tolist() == want[0]
    assert offsets.tolist() == want[1]
    assert bags_per_slot.tolist() == want[2]
    assert id_bags.tolist() == want[3]


@settings(max_examples=50, deadline=None)
@given(ids=st.lists(st.integers(0, 2**62), min_size=1, max_size=20), key=st.integers(0, 2**32 - 1),
       rows=st.integers(1, 2**31))
def test_hash_is_bit_identical_to_hash_functions(ids, key, rows):
    values = torch.tensor(ids, dtype=torch.int64)
    params = torch.tensor([[K.HASH, 0, 0, key, rows]], dtype=torch.int64)
    out = recsys_kernels.transform_ids(values, torch.ones(len(ids), dtype=torch.int64), len(ids), params, torch.zeros(0, dtype=torch.int64))
    assert torch.equal(out[0], hash_to_rows(values, key, rows))


# the tables of example()'s slots: every row each slot can emit, and no more
EXAMPLE_SLOT_ROWS = torch.tensor([40, 17, 101, 7, 47, 8, 8, 5, 4, 16, 20, 40, 40, 3, 4, 100, 1500, 1000])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 6))
def test_rows_within_their_tables_pass_the_check_unchanged(seed, batch):
    args = example(seed, batch)
    for got, want in zip(recsys_kernels.transform_ids(*args, EXAMPLE_SLOT_ROWS), recsys_kernels.transform_ids(*args)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("slot, feature", [(0, 0), (4, 2), (10, 0), (14, 1), (17, 2)])
def test_a_row_beyond_its_table_is_named(slot, feature):
    """An id whose row falls outside its slot's table (a vocabulary that does not match the
    plan) is an error naming the id, its feature and the slot, not a row FBGEMM zeroes."""
    values, lengths, batch, params, aux = example(0, batch=64)
    rows, offsets, bags_per_slot, _ = recsys_kernels.transform_ids(values, lengths, batch, params, aux)
    first_bag = int(bags_per_slot[:slot].sum())
    emitted = rows[offsets[first_bag]:offsets[first_bag + bags_per_slot[slot]]]  # this slot's rows
    limits = EXAMPLE_SLOT_ROWS.clone()
    limits[slot] = emitted.max()  # the largest row is one past the end
    pattern = rf"of feature #{feature} \(bag \d+\) maps to row {int(emitted.max())} of slot {slot}, beyond its table's"
    with pytest.raises(RuntimeError, match=pattern):
        recsys_kernels.transform_ids(values, lengths, batch, params, aux, limits)
    with pytest.raises(RuntimeError, match=r"slot_rows must be int64 of shape \(18\)"):
        recsys_kernels.transform_ids(values, lengths, batch, params, aux, limits[:-1])


def test_opcheck():
    for seed, max_len in [(0, 3), (1, 1), (2, 0)]:
        torch.library.opcheck(torch.ops.recsys.transform_ids.default, example(seed, max_len=max_len))
        torch.library.opcheck(torch.ops.recsys.transform_ids.default, (*example(seed, max_len=max_len), EXAMPLE_SLOT_ROWS))


def test_compiles_with_data_dependent_sizes():
    torch._dynamo.reset()
    args = example(3)
    compiled = torch.compile(recsys_kernels.transform_ids, fullgraph=True, backend="eager")
    for got, want in zip(compiled(*args), recsys_kernels.transform_ids(*args)):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v, p: (v.neg() - 1, p), "negative id"),
        (lambda v, p: (v, p[[7]].clone().index_put_((torch.tensor([0]), torch.tensor([4])), torch.tensor(2))), "beyond the 2 rows"),
        (lambda v, p: (v, p[[1]].clone().index_put_((torch.tensor([0]), torch.tensor([1])), torch.tensor(9))), "reads feature #9 of 3"),
        (lambda v, p: (v, p[[1]].clone().index_put_((torch.tensor([0]), torch.tensor([3])), torch.tensor(0))), "non-positive modulus"),
    ],
)
def test_bad_input_is_named(change, message):
    values, lengths, batch, params, aux = example(0, max_len=2)
    values, params = change(values, params)
    with pytest.raises(RuntimeError, match=message):
        recsys_kernels.transform_ids(values, lengths, batch, params, aux)


def test_lengths_must_cover_the_values():
    values, lengths, batch, params, aux = example(0)
    with pytest.raises(RuntimeError, match="lengths sum to"):
        recsys_kernels.transform_ids(values[:-1], lengths, batch, params, aux)
