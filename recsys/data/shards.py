"""The one writer of a prepared dataset's Parquet shards (see :mod:`recsys.data.layout`).

Ingest and the synthetic generator both write through :class:`ShardWriter`, so every dataset
has the same codec (zstd) and row-group size whatever produced it. Row groups are the
loader's unit of work and shuffle; their boundaries depend only on row positions, never on
how the rows arrive, so a producer's output does not depend on its chunking.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.layout import shard_path, split_dir

ROW_GROUP_ROWS = 1 << 16
CODEC = "zstd"


class ShardWriter:
    """Write one split as ``part-NNNNN.parquet`` files of ``rows_per_shard`` rows.

    Incoming tables of any size are buffered and cut into row groups of ``ROW_GROUP_ROWS``
    rows (a shard's last group may be smaller).
    """

    def __init__(self, root: Path, split: str, rows_per_shard: int, schema: pa.Schema) -> None:
        self.root, self.split, self.rows_per_shard, self.schema = Path(root), split, rows_per_shard, schema
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._shard_rows = 0  # rows in the open shard
        self.shards = 0
        self._writer: pq.ParquetWriter | None = None
        split_dir(root, split).mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows and self._pending_rows >= self._next_group_rows():
            self._flush(self._next_group_rows())

    def close(self) -> None:
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.shards += 1

    def _next_group_rows(self) -> int:
        return min(ROW_GROUP_ROWS, self.rows_per_shard - self._shard_rows)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        group, rest = table.slice(0, rows), table.slice(rows)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        if self._writer is None:
            self._writer = pq.ParquetWriter(shard_path(self.root, self.split, self.shards), self.schema, compression=CODEC)
        self._writer.write_table(group, row_group_size=rows)
        self._shard_rows += rows
        if self._shard_rows == self.rows_per_shard:
            self._writer.close()
            self._writer, self._shard_rows, self.shards = None, 0, self.shards + 1
