import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.embeddings.tables import INIT_BLOCK_ROWS, PhysicalTable, TableBatchedLookup, init_rows

from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig


def test_physical_table_rejects_dims_fbgemm_cannot_run():
    with pytest.raises(ValueError, match="multiple of 4"):
        PhysicalTable("t", 10, 6)
    with pytest.raises(ValueError, match="num_embeddings"):
        PhysicalTable("t", 0, 8)


def test_initial_rows_of_any_range_equal_the_whole_tables_rows():
    table = PhysicalTable("t", 2 * INIT_BLOCK_ROWS + 5, 4)
    whole = init_rows(table, 3, seed=7, start=0, stop=table.num_embeddings)
    start, stop = INIT_BLOCK_ROWS - 2, 2 * INIT_BLOCK_ROWS + 1  # spans three blocks
    torch.testing.assert_close(init_rows(table, 3, seed=7, start=start, stop=stop), whole[start:stop])
    assert whole.abs().max() <= table.num_embeddings**-0.5
    assert not torch.equal(init_rows(table, 4, seed=7, start=0, stop=8), whole[:8])  # tables differ


def test_lookup_equals_per_table_gather_and_sum():
    tables = [PhysicalTable("a", 10, 4), PhysicalTable("b", 7, 8)]
    lookup = TableBatchedLookup(tables, TableOptimizerConfig())
    weights = lookup.table_weights()
    # batch of 2; table a: bags [1, 2] and [3]; table b: bags [] and [6, 6]
    values = torch.tensor([1, 2, 3, 6, 6])
    offsets = torch.tensor([0, 2, 3, 3, 5])
    out = lookup(values, offsets)
    assert out.shape == (2, 12)
    expected_a = torch.stack([weights["a"][1] + weights["a"][2], weights["a"][3]])
    expected_b = torch.stack([torch.zeros(8), 2 * weights["b"][6]])
    torch.testing.assert_close(out, torch.cat([expected_a, expected_b], dim=1))


def test_fused_sgd_updates_only_the_rows_in_the_batch_exactly():
    lr = 0.5
    lookup = TableBatchedLookup([PhysicalTable("a", 5, 4)], TableOptimizerConfig(kind=TableOptimizer.sgd, lr=lr))
    before = lookup.table_weights()["a"].clone()
    out = lookup(torch.tensor([2, 2, 4]), torch.tensor([0, 2, 3]))  # bags {2, 2} and {4}
    out.sum().backward()  # d/d row = number of times the row was pooled
    after = lookup.table_weights()["a"]
    torch.testing.assert_close(after[2], before[2] - lr * 2)
    torch.testing.assert_close(after[4], before[4] - lr * 1)
    torch.testing.assert_close(after[[0, 1, 3]], before[[0, 1, 3]])


def test_rowwise_adagrad_state_is_one_value_per_row(full_tables):
    collection = full_tables({"C1": 11, "C2": 5}, 8)
    report = collection.memory()
    state = collection.lookup.tbe.state_dict()
    assert report.parameters == state["weights_host"].numel() == (11 + 5) * 8
    assert report.weight_bytes == state["weights_host"].numel() * 4
    assert report.optimizer_bytes == state["momentum1_host"].numel() * 4 == (11 + 5) * 4


def test_collection_returns_one_vector_per_feature_and_checks_keys(full_tables):
    collection = full_tables({"C1": 11, "C2": 5}, 8)
    kjt = KeyedJaggedTensor(
        keys=["C1", "C2"], values=torch.tensor([0, 10, 4, 1]), lengths=torch.ones(4, dtype=torch.int32), stride=2
    )
    out = collection(kjt)
    assert out.keys() == ["C1", "C2"]
    assert out.values().shape == (2, 16)
    torch.testing.assert_close(out["C2"][0], collection.lookup.table_weights()["C2"][4])
    wrong = KeyedJaggedTensor(keys=["C2", "C1"], values=torch.tensor([0, 1, 2, 3]), lengths=torch.ones(4, dtype=torch.int32))
    with pytest.raises(KeyError, match="expected sparse features"):
        collection(wrong)
