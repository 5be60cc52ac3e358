"""Tables over FBGEMM's 4 GiB CPU limit, cut into pieces: every row gets its own update.

The tables are real and 10 GB: sparse files, of which only the touched pages take disk or RAM."""

from __future__ import annotations

import os

import pytest
import torch
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from fbgemm_gpu.split_table_batched_embeddings_ops_common import (
    EmbeddingLocation,
    PoolingMode,
)
from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
    ComputeDevice,
    SplitTableBatchedEmbeddingBagsCodegen,
)

from recsys.embeddings.row_ranges import MAX_PIECE_BYTES, RowRangeLookup, piece_rows
from recsys.embeddings.specs import TableOptimizerConfig
from recsys.embeddings.tables import PhysicalTable

ROWS, DIM = 40_000_000, 64  # the 1TB profile's cap at dim 64: 10.24 GB of weights
PICKS = [5, piece_rows(DIM) - 1, piece_rows(DIM), 20_000_000, ROWS - 1]


def sparse_weights(path) -> torch.Tensor:
    return torch.from_file(str(path), shared=True, size=ROWS * DIM, dtype=torch.float32)


def written_pages(path) -> list[int]:
    """The 4 KB pages of the file that hold data (the rest are holes)."""
    fd, pages, offset = os.open(path, os.O_RDONLY), [], 0
    try:
        while True:
            try:
                offset = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # no data past offset
                return pages
            end = os.lseek(fd, offset, os.SEEK_HOLE)
            pages += range(offset // 4096, end // 4096)
            offset = end
    finally:
        os.close(fd)


@pytest.mark.xfail(strict=True, reason="fbgemm-gpu 1.8: the CPU row-wise Adagrad backward addresses rows by a 32-bit byte offset")
def test_fbgemm_cpu_rowwise_adagrad_updates_rows_past_4_gib(tmp_path):
    """The upstream bug RowRangeLookup works around; once this passes, the pieces can go."""
    weights = sparse_weights(tmp_path / "big.f32")
    tbe = SplitTableBatchedEmbeddingBagsCodegen(
        [(ROWS, DIM, EmbeddingLocation.HOST, ComputeDevice.CPU)], optimizer=EmbOptimType.EXACT_ROWWISE_ADAGRAD,
        learning_rate=0.1, pooling_mode=PoolingMode.SUM, preallocated_host_buffers={"weights": weights},
    )
    row = ROWS - 1
    weights.view(ROWS, DIM)[row] = 1.0
    tbe(torch.tensor([row]), torch.tensor([0, 1])).sum().backward()
    assert not torch.equal(weights.view(ROWS, DIM)[row], torch.ones(DIM))


def test_a_table_over_4_gib_updates_each_looked_up_row_and_no_other(tmp_path):
    path = tmp_path / "big.f32"
    weights = sparse_weights(path)
    lookup = RowRangeLookup([PhysicalTable("big", ROWS, DIM)], [0], [ROWS], TableOptimizerConfig(lr=0.1), [0], "all",
                            host_buffers={"weights": weights})
    assert lookup.levels == 3 and piece_rows(DIM) * DIM * 4 == MAX_PIECE_BYTES  # 16.7M rows a piece
    table = weights.view(ROWS, DIM)
    picks = torch.tensor(PICKS)
    table[picks] = 1.0
    n = len(PICKS)
    out = lookup(picks, torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.int64), torch.arange(n),
                 torch.zeros(n, dtype=torch.int64), [n], variable=False)  # one id a bag
    assert torch.equal(out, torch.ones(n, DIM))  # the forward read each row
    out.sum().backward()
    assert (table[picks] < 1).all()  # row-wise Adagrad moved every looked-up row
    assert written_pages(path) == [r * DIM * 4 // 4096 for r in PICKS]  # and wrote nowhere else


def test_a_cpu_table_over_4_gib_without_pieces_is_refused_naming_it():
    from recsys.embeddings.tables import TableBatchedLookup

    with pytest.raises(ValueError, match=r"tables big \(40,000,000 rows x 64: 10,240,000,000 bytes\).*placement.ram_budget"):
        TableBatchedLookup([PhysicalTable("small", 10, 64), PhysicalTable("big", ROWS, DIM)], TableOptimizerConfig(), seed=None)
