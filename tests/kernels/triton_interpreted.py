"""recsys::transform_ids_masked's Triton kernels on CPU tensors, through Triton's interpreter.

Run by tests/kernels/test_transform_ids_masked.py in a fresh process with ``TRITON_INTERPRET=1``
(the interpreter must be on before Triton is first imported); skipped when run otherwise. The
file name keeps pytest's collection from picking it up on its own.
"""

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.embeddings.hash_functions import hash_to_rows
from tests.kernels.test_transform_ids import K
from tests.kernels.test_transform_ids_masked import masked_args

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1 before Triton loads")
triton_masked = pytest.importorskip("recsys_kernels.triton_masked")
from recsys_kernels.masked import masked_torch  # noqa: E402


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 6), max_len=st.integers(0, 4))
def test_triton_kernels_equal_the_torch_version(seed, batch, max_len):
    args = masked_args(seed, batch, max_len)
    for got, want in zip(triton_masked.transform_ids_masked(*args), masked_torch(*args)):
        assert torch.equal(got, want)


@settings(max_examples=20, deadline=None)
@given(ids=st.lists(st.integers(0, 2**62), min_size=1, max_size=20), key=st.integers(0, 2**32 - 1), rows=st.integers(1, 2**31))
def test_triton_hash_is_bit_identical_to_hash_functions(ids, key, rows):
    values = torch.tensor(ids, dtype=torch.int64)
    params = torch.tensor([[K.HASH, 0, 0, key, rows]], dtype=torch.int64)
    out = triton_masked.transform_ids_masked(values, torch.ones(len(ids), dtype=torch.int64), params,
                                             torch.zeros(0, dtype=torch.int64), len(ids), [len(ids)], [len(ids)])
    assert torch.equal(out[0], hash_to_rows(values, key, rows))


@pytest.mark.parametrize("column, value", [(4, 2), (3, 0)], ids=["id_beyond_its_map", "zero_divisor"])
def test_triton_flags_bad_ids_and_parameters(column, value):
    values, lengths, params, aux, batch, ids, bags = masked_args()
    params = params.clone()
    params[7 if column == 4 else 1, column] = value  # the REMAP slot's map gets 2 rows; the MODULO slot divides by 0
    with pytest.raises(RuntimeError, match="transform_ids_masked"):
        triton_masked.transform_ids_masked(values, lengths, params, aux, batch, ids, bags)
