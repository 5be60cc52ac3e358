import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from recsys.data.layout import list_shards
from recsys.data.schema import CRITEO_CATEGORICAL
from recsys.data.loader import ParquetBatches


def all_rows(root, split):
    table = pq.read_table(list_shards(root, split))
    return table.column("C1").to_numpy(), table.column("label").to_numpy()


def test_batches_cover_every_row_once_in_order(tiny_dataset):
    batches = list(ParquetBatches(tiny_dataset, "valid", 300, prefetch=2))
    ids, labels = all_rows(tiny_dataset, "valid")
    assert [b.size for b in batches] == [300, 300, 300, 124]
    got = torch.cat([b.sparse["C1"].values() for b in batches]).numpy()
    np.testing.assert_array_equal(got, ids)
    np.testing.assert_array_equal(torch.cat([b.labels for b in batches]).numpy(), labels)


def test_batch_layout(tiny_dataset):
    batch = next(iter(ParquetBatches(tiny_dataset, "train", 64)))
    assert batch.dense.shape == (64, 13) and batch.dense.dtype == torch.float32
    assert batch.sparse.keys() == list(CRITEO_CATEGORICAL)
    assert batch.sparse.stride() == 64
    assert torch.all(batch.sparse.lengths() == 1)
    assert batch.labels.dtype == torch.float32


def test_shuffle_is_a_permutation_that_changes_with_the_epoch(tiny_dataset):
    loader = ParquetBatches(tiny_dataset, "train", 512, shuffle=True, seed=3)
    epoch0 = torch.cat([b.sparse["C1"].values() for b in loader]).numpy()
    loader.set_epoch(1)
    epoch1 = torch.cat([b.sparse["C1"].values() for b in loader]).numpy()
    ids, _ = all_rows(tiny_dataset, "train")
    np.testing.assert_array_equal(np.sort(epoch0), np.sort(ids))
    assert not np.array_equal(epoch0, ids) and not np.array_equal(epoch0, epoch1)


def test_resume_skips_exactly_the_batches_already_seen(tiny_dataset):
    loader = ParquetBatches(tiny_dataset, "train", 500, shuffle=True, seed=1)
    full = [b.labels for b in loader]
    resumed = [b.labels for b in loader.iter_from(3)]
    assert len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed):
        torch.testing.assert_close(a, b)


def test_limit_and_drop_last(tiny_dataset):
    assert len(list(ParquetBatches(tiny_dataset, "valid", 300, limit_batches=2))) == 2
    assert [b.size for b in ParquetBatches(tiny_dataset, "valid", 300, drop_last=True)] == [300] * 3


def test_missing_split_is_a_clear_error(tmp_path, tiny_dataset):
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        ParquetBatches(tmp_path, "train", 8)
    with pytest.raises(ValueError, match="unknown split"):
        ParquetBatches(tiny_dataset, "training", 8)


def test_errors_in_the_reader_thread_reach_the_consumer(tiny_dataset, monkeypatch):
    loader = ParquetBatches(tiny_dataset, "train", 64, prefetch=2)

    def broken(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(loader, "_read_group", broken)
    with pytest.raises(OSError, match="disk gone"):
        list(loader)


def test_ranks_take_contiguous_slices_and_can_keep_the_global_batchs_ids(tiny_dataset):
    """Data-parallel ranks read the same global batches and keep their slices; asked to, each also
    keeps the global batch's sparse ids (a sharded disk tier reads ahead the rows its rank holds)."""
    whole = next(iter(ParquetBatches(tiny_dataset, "train", 256)))
    halves = [next(iter(ParquetBatches(tiny_dataset, "train", 256, part=(r, 2), global_sparse=True))) for r in (0, 1)]
    assert [h.size for h in halves] == [128, 128] and whole.global_sparse is None
    torch.testing.assert_close(torch.cat([h.labels for h in halves]), whole.labels)
    for h in halves:
        assert torch.equal(h.global_sparse.values(), whole.sparse.values())
        assert torch.equal(h.global_sparse.lengths(), whole.sparse.lengths())
    for key in whole.sparse.keys():
        torch.testing.assert_close(torch.cat([h.sparse[key].values() for h in halves]), whole.sparse[key].values())
    assert next(iter(ParquetBatches(tiny_dataset, "train", 256, part=(0, 2)))).global_sparse is None  # not asked for


def epoch_ids(loader: ParquetBatches, epoch: int) -> np.ndarray:
    loader.set_epoch(epoch)
    return torch.cat([b.sparse["C1"].values() for b in loader.iter_from(0)]).numpy()


@pytest.mark.parametrize("buffer", [1, 4])
def test_reading_ahead_changes_no_batch(tiny_dataset, buffer):
    """Blocks read one ahead, and each epoch's first block read while the epoch before ends:
    the batches are the synchronous loader's, epoch after epoch, and nothing is read past the
    last epoch."""
    options = dict(shuffle=True, seed=5, shuffle_buffer_groups=buffer)
    sync = ParquetBatches(tiny_dataset, "train", 256, prefetch=0, **options)
    ahead = ParquetBatches(tiny_dataset, "train", 256, prefetch=2, **options)
    assert len(ahead._groups) > buffer  # more than one block an epoch
    ahead.set_last_epoch(2)
    for epoch in range(3):
        np.testing.assert_array_equal(epoch_ids(ahead, epoch), epoch_ids(sync, epoch))
    assert ahead._ahead is None


def test_an_epoch_takes_its_read_ahead_and_drops_another_epochs(tiny_dataset):
    loader = ParquetBatches(tiny_dataset, "train", 256, shuffle=True, seed=5, shuffle_buffer_groups=1)
    want = epoch_ids(ParquetBatches(tiny_dataset, "train", 256, shuffle=True, seed=5, shuffle_buffer_groups=1, prefetch=0), 1)
    reads = []
    read_group = loader._read_group
    loader._read_group = lambda *group: reads.append(group) or read_group(*group)
    loader.read_ahead(1)
    np.testing.assert_array_equal(epoch_ids(loader, 1), want)
    assert len(reads) == len(loader._groups)  # read once, by the read-ahead
    loader.read_ahead(3)  # an epoch that never comes: dropped by the next epoch, its thread stopped
    np.testing.assert_array_equal(epoch_ids(loader, 1), want)
    loader.read_ahead(2)
    loader.close()
    assert not [t for t in threading.enumerate() if t.name == "recsys-blocks"]
