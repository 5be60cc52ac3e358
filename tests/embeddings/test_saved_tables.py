"""A saved lookup's tables, whatever layout held them: views by table, and loads across layouts
(tiered <-> in RAM) that train on exactly as the saving lookup would."""

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.embeddings import row_ranges
from recsys.embeddings.build import make_embedding
from recsys.embeddings.placement import TieredLookup, hot_split
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.saved_tables import TableRows, saved_tables
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
from recsys.embeddings.tables import PhysicalTable, TableBatchedLookup

FEATURES = [FeatureInfo("C1", 1000), FeatureInfo("C2", 60), FeatureInfo("C3", 300)]


def batches(steps: int, batch: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        lengths = torch.randint(0, 4, (len(FEATURES) * batch,), generator=gen)
        per_feature = lengths.view(len(FEATURES), batch).sum(dim=1)
        values = [(torch.rand(int(n), generator=gen) ** 3 * f.num_embeddings).long() for f, n in zip(FEATURES, per_feature)]
        yield KeyedJaggedTensor(keys=[f.name for f in FEATURES], values=torch.cat(values), lengths=lengths)


def train_steps(collection, data) -> list[torch.Tensor]:
    outputs = []
    for kjt in data:
        out = collection(kjt).values()
        (out**2).sum().backward()  # the fused optimizer updates rows (and their Adagrad state) in the backward
        outputs.append(out.detach())
    return outputs


def momenta(lookup) -> dict[str, torch.Tensor]:
    """Each table's row-wise Adagrad state, whole."""
    if isinstance(lookup, TieredLookup):
        return {t.name: torch.cat([s for _, s in lookup.hot.state_pieces(i) + lookup.cold.state_pieces(i)])
                for i, t in enumerate(lookup.tables)}
    return {t.name: s[0] for t, s in zip(lookup.tables, lookup.tbe.split_optimizer_states())}


def assert_same_tables(a, b) -> None:
    for name, weight in a.table_weights().items():
        assert torch.equal(b.table_weights()[name], weight), name
    for name, state in momenta(a).items():
        assert torch.equal(momenta(b)[name], state), name


def test_a_saved_lookup_state_gives_each_table_as_views(tmp_path):
    """saved_tables cuts a saved lookup's flat FBGEMM buffers into its tables (slots may share a
    table), also from a memory-mapped checkpoint, and refuses another plan's state."""
    tables = [PhysicalTable("a", 10, 4), PhysicalTable("b", 7, 8), PhysicalTable("c", 5, 4)]
    optimizer = TableOptimizerConfig()
    lookup = TableBatchedLookup(tables, optimizer, slot_tables=[0, 1, 1, 2, 0])
    for index, (momentum,) in enumerate(lookup.tbe.split_optimizer_states()):
        momentum.copy_(torch.arange(momentum.numel()) + 100.0 * index)
    torch.save({"lookup": lookup.state_dict()}, tmp_path / "saved.pt")
    mapped = torch.load(tmp_path / "saved.pt", mmap=True)["lookup"]
    states = saved_tables(mapped, "", tables, optimizer)
    for table, weight, (momentum,) in zip(tables, lookup.tbe.split_embedding_weights(), lookup.tbe.split_optimizer_states()):
        assert torch.equal(states[table.name]["weight"][:], weight) and torch.equal(states[table.name]["momentum1"][:], momentum)
        assert len(states[table.name]["weight"].pieces) == 1  # one view, no copy
    swapped = [PhysicalTable("a", 10, 4), PhysicalTable("b", 5, 4), PhysicalTable("c", 7, 8)]  # same bytes, other tables
    assert saved_tables(mapped, "", swapped, optimizer) is None
    sgd = TableBatchedLookup(tables, TableOptimizerConfig(kind=TableOptimizer.sgd))
    assert all(set(states) == {"weight"} for states in saved_tables(sgd.state_dict(), "", tables, optimizer).values())


def test_table_rows_slice_across_pieces():
    whole = torch.arange(20.0).view(10, 2)
    rows = TableRows([(0, whole[:3]), (3, whole[3:4]), (4, whole[4:])])
    assert len(rows) == 10
    for start, stop in [(0, 10), (2, 5), (3, 4), (5, 9), (0, 0), (9, 12)]:
        assert torch.equal(rows[start:stop], whole[start:stop]), (start, stop)
    assert rows[5:9].data_ptr() == whole[5].data_ptr()  # inside one piece: a view
    with pytest.raises(IndexError, match="contiguous"):
        rows[::2]


@pytest.mark.parametrize(("piece_bytes", "budget"), [(None, "6KB"), (5 * 16 * 4, "8KB")], ids=["whole", "pieces_of_5_rows"])
def test_tiered_and_in_ram_tables_load_each_other_and_train_on_alike(piece_bytes, budget, tmp_path, monkeypatch):
    """A tiered lookup's saved state (hot and cold parts, each cut into pieces) loads into tables
    in RAM, and those tables' state into a tiered lookup: weights and Adagrad state exactly, and
    the next steps give the saving lookup's outputs."""
    if piece_bytes is not None:  # FBGEMM's 4 GiB a table, scaled down
        monkeypatch.setattr(row_ranges, "MAX_PIECE_BYTES", piece_bytes)
    optimizer = TableOptimizerConfig()
    placement = PlacementConfig(ram_budget=budget, disk_dir=str(tmp_path / "saving"))
    tiered = make_embedding({"method": "qr", "collisions": 4}, FEATURES, 16, optimizer, seed=3, placement=placement)
    assert isinstance(tiered.lookup, TieredLookup)
    data = list(batches(6))
    train_steps(tiered, data[:3])
    torch.save(tiered.state_dict(), tmp_path / "tiered.pt")
    state = torch.load(tmp_path / "tiered.pt", mmap=True)
    tables = tiered.plan.tables

    in_ram = make_embedding({"method": "qr", "collisions": 4}, FEATURES, 16, optimizer, seed=11)
    in_ram.lookup.load_tables(saved_tables(state, "lookup.", tables, optimizer, placement))
    assert_same_tables(tiered.lookup, in_ram.lookup)

    again = make_embedding({"method": "qr", "collisions": 4}, FEATURES, 16, optimizer, seed=11,
                           placement=PlacementConfig(ram_budget=budget, disk_dir=str(tmp_path / "loading")))
    again.lookup.load_tables(saved_tables(in_ram.state_dict(), "lookup.", tables, optimizer))
    assert_same_tables(tiered.lookup, again.lookup)
    expected = train_steps(tiered, data[3:])
    for other in (in_ram, again):
        for got, want in zip(train_steps(other, data[3:]), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        for name, weight in tiered.lookup.table_weights().items():
            torch.testing.assert_close(other.lookup.table_weights()[name], weight, rtol=0, atol=1e-6)

    # another split of the same tables (another RAM budget) is not the one saved
    other = PlacementConfig(ram_budget="5KB")
    assert hot_split(tables, optimizer, other) != tiered.lookup.hot_counts
    assert saved_tables(state, "lookup.", tables, optimizer, other) is None
    assert saved_tables(state, "lookup.", tables, optimizer) is None  # without the placement a tiered state is not read
    sgd = make_embedding({"method": "qr", "collisions": 4}, FEATURES, 16, TableOptimizerConfig(kind=TableOptimizer.sgd), seed=11)
    saved = saved_tables(state, "lookup.", tables, optimizer, placement)
    sgd.lookup.load_tables(saved)  # SGD keeps no state: the weights alone
    for name, weight in sgd.lookup.table_weights().items():
        assert torch.equal(weight, saved[name]["weight"][:]), name
