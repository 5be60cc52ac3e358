"""Parquet shards → training batches (dense tensor, KeyedJaggedTensor, labels).

The loader works a row group at a time: each row group becomes a handful of contiguous
arrays (dense ``(N, D)``, single-hot sparse ``(F, N)``, labels ``(N,)``, and per multi-hot
feature its bag lengths and flat ids), and batches are slices of them, so there is no Python
work per row. Feature names and kinds come from ``meta.json``; a multi-hot feature's KJT
lengths are its real bag sizes (0 for an empty bag). Shuffling permutes the order of row groups
across all shards and the rows inside a shuffle buffer ("block") of ``shuffle_buffer_groups`` row
groups.

Two background threads keep the model from waiting: one reads and shuffles the next block while
the current one is cut into batches, the other keeps ``prefetch`` batches ready. Without the
first thread every block, and the start of every epoch, stalled the loop while it was read
(130-230 ms for a block of 180K rows here, five to ten training steps of the Kaggle DLRM). A training
loop that says which epoch is its last (:meth:`ParquetBatches.set_last_epoch`) also gets the
next epoch's first block read while the current epoch's last block trains. Memory: up to three
blocks at once (the one being cut, the next, the next epoch's first).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.layout import LABEL, DatasetMeta, list_shards


@dataclasses.dataclass
class Batch:
    """One training batch.

    Attributes:
        dense: (B, n_dense) float32, already transformed.
        sparse: KeyedJaggedTensor with one key per sparse feature (lengths 1 for a single-hot
            feature, the bag sizes for a multi-hot one).
        labels: (B,) float32 in {0, 1}.
        global_sparse: a data-parallel rank's batch: the sparse features of the whole global
            batch, of which ``sparse`` is its slice (where the loader was asked to keep them: a
            sharded disk tier reads ahead the rows its rank holds, whichever rank looks them up).
    """

    dense: torch.Tensor
    sparse: KeyedJaggedTensor
    labels: torch.Tensor
    global_sparse: Optional[KeyedJaggedTensor] = None

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    def pinned(self) -> "Batch":
        """In page-locked memory, so copies to a GPU can be ``non_blocking``."""
        return Batch(self.dense.pin_memory(), self.sparse.pin_memory(), self.labels.pin_memory(), self.global_sparse)


@dataclasses.dataclass
class _Bags:
    """One multi-hot feature over N rows: row i holds ``values[offsets[i]:offsets[i + 1]]``."""

    lengths: np.ndarray  # (N,) int64
    values: np.ndarray  # (sum of lengths,) int64

    @property
    def offsets(self) -> np.ndarray:  # (N + 1,)
        return np.concatenate([[0], np.cumsum(self.lengths)])

    def take(self, index: np.ndarray | slice) -> "_Bags":
        offsets = self.offsets
        if isinstance(index, slice):
            start, stop, _ = index.indices(len(self.lengths))
            return _Bags(self.lengths[index], self.values[offsets[start] : offsets[max(start, stop)]])
        lengths = self.lengths[index]
        new_starts = np.cumsum(lengths) - lengths
        positions = np.repeat(offsets[:-1][index] - new_starts, lengths) + np.arange(lengths.sum())
        return _Bags(lengths, self.values[positions])

    @staticmethod
    def concat(bags: list["_Bags"]) -> "_Bags":
        return _Bags(np.concatenate([b.lengths for b in bags]), np.concatenate([b.values for b in bags]))


@dataclasses.dataclass
class _Block:
    dense: np.ndarray  # (N, n_dense) float32
    sparse: np.ndarray  # (F_single, N) int64, the single-hot features
    labels: np.ndarray  # (N,) float32
    bags: dict[str, _Bags]  # the multi-hot features

    def __len__(self) -> int:
        return self.labels.shape[0]

    def take(self, index: np.ndarray | slice) -> "_Block":
        bags = {name: bag.take(index) for name, bag in self.bags.items()}
        return _Block(self.dense[index], self.sparse[:, index], self.labels[index], bags)

    @staticmethod
    def concat(blocks: list["_Block"]) -> "_Block":
        if len(blocks) == 1:
            return blocks[0]
        return _Block(
            np.concatenate([b.dense for b in blocks]),
            np.concatenate([b.sparse for b in blocks], axis=1),
            np.concatenate([b.labels for b in blocks]),
            {name: _Bags.concat([b.bags[name] for b in blocks]) for name in blocks[0].bags},
        )


class ParquetBatches:
    """Iterable of :class:`Batch` over one split of a prepared dataset.

    Args:
        root: dataset directory (see :mod:`recsys.data.layout`).
        split: ``train``, ``valid`` or ``test``.
        batch_size: rows per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: shuffle row groups and rows (a new order each epoch via :meth:`set_epoch`).
        seed: base seed of the shuffle.
        prefetch: batches prepared ahead by the background thread (0 = synchronous).
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        shuffle_buffer_groups: row groups whose rows are shuffled together.
        limit_batches: stop after this many batches per epoch (``None`` = all).
        part: (rank, ranks): each batch is this rank's contiguous slice of the global batch
            (rows [rank·B/ranks, (rank+1)·B/ranks)), for data-parallel ranks.
        pin_memory: batches in page-locked memory (for ``non_blocking`` copies to a GPU).
        global_sparse: with ``part``, each batch also keeps the global batch's sparse features
            (:attr:`Batch.global_sparse`).

    To resume mid-epoch, iterate :meth:`iter_from` with the number of batches already seen.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        prefetch: int = 4,
        drop_last: bool = False,
        shuffle_buffer_groups: int = 4,
        limit_batches: int | None = None,
        part: tuple[int, int] = (0, 1),
        pin_memory: bool = False,
        global_sparse: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.meta = DatasetMeta.load(root)
        self.paths = list_shards(root, split)
        if not self.paths:
            raise FileNotFoundError(f"no Parquet shards for split {split!r} under {root}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.prefetch = prefetch
        self.drop_last = drop_last
        self.shuffle_buffer_groups = max(1, shuffle_buffer_groups)
        self.limit_batches = limit_batches
        self.part = part
        self.pin_memory = pin_memory
        self.global_sparse = global_sparse and part[1] > 1
        self.epoch = 0
        self.last_epoch: int | None = None
        self._ahead: tuple[int, _ReadAhead] | None = None  # an epoch's block reader, started early
        self._ahead_lock = threading.Lock()
        self._groups = [
            (path, group)
            for path in self.paths
            for group in range(pq.ParquetFile(path).metadata.num_row_groups)
        ]
        self.rows = sum(pq.ParquetFile(p).metadata.num_rows for p in self.paths)
        self._columns = [LABEL, *self.meta.dense_features, *self.meta.sparse_features]
        self._single = [f for f in self.meta.sparse_features if f not in self.meta.multi_hot_features]

    def __len__(self) -> int:
        full, rest = divmod(self.rows, self.batch_size)
        n = full + (0 if self.drop_last or rest == 0 else 1)
        return n if self.limit_batches is None else min(n, self.limit_batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_last_epoch(self, epoch: int | None) -> None:
        """The last epoch the caller will iterate: up to it, each epoch's first block is read
        while the epoch before ends (with ``prefetch`` > 0). Batches do not change."""
        self.last_epoch = epoch

    def read_ahead(self, epoch: int) -> None:
        """Start reading ``epoch``'s first block now; a later :meth:`iter_from` of that epoch
        takes it (with ``prefetch`` > 0; else nothing to do)."""
        if self.prefetch <= 0:
            return
        with self._ahead_lock:
            if self._ahead is not None and self._ahead[0] == epoch:
                return
            stale, self._ahead = self._ahead, (epoch, _ReadAhead(self._blocks(epoch), 1, "recsys-blocks"))
        if stale is not None:
            stale[1].close()

    def close(self) -> None:
        """Stop a read-ahead no epoch took, and free its block."""
        stale = self._take_ahead()
        if stale is not None:
            stale[1].close()

    def _take_ahead(self) -> tuple[int, "_ReadAhead"] | None:
        """The read-ahead started for some epoch (None if there is none), no longer held here."""
        with self._ahead_lock:
            ahead, self._ahead = self._ahead, None
        return ahead

    def iter_from(self, skip_batches: int = 0) -> Iterator[Batch]:
        """Iterate one epoch (the one :meth:`set_epoch` set), starting after ``skip_batches``
        batches (for exact resume)."""
        produced = self._produce(self.epoch, skip_batches)
        return produced if self.prefetch <= 0 else _prefetched(produced, self.prefetch)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)

    def _read_group(self, path: Path, group: int) -> _Block:
        table = pq.ParquetFile(path).read_row_group(group, columns=self._columns)
        n = table.num_rows
        column = lambda name: table.column(name).to_numpy()  # noqa: E731
        dense = np.stack([column(f) for f in self.meta.dense_features], axis=1) if self.meta.dense_features \
            else np.zeros((n, 0), np.float32)
        sparse = np.stack([column(f) for f in self._single]) if self._single else np.zeros((0, n), np.int64)
        bags = {}
        for name in self.meta.multi_hot_features:
            lists = table.column(name).combine_chunks()
            lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
            bags[name] = _Bags(lengths, lists.flatten().to_numpy().astype(np.int64))
        return _Block(dense.astype(np.float32, copy=False), sparse.astype(np.int64, copy=False),
                      column(LABEL).astype(np.float32), bags)

    @property
    def _groups_per_block(self) -> int:
        return self.shuffle_buffer_groups if self.shuffle else 1

    def _blocks(self, epoch: int) -> Iterator[_Block]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self._groups)) if self.shuffle else range(len(self._groups))
        order = list(order)
        step = self._groups_per_block
        for start in range(0, len(order), step):
            block = _Block.concat([self._read_group(*self._groups[i]) for i in order[start : start + step]])
            yield block.take(rng.permutation(len(block))) if self.shuffle else block

    def _block_reader(self, epoch: int) -> Iterator[_Block]:
        """``epoch``'s blocks: the read-ahead started for it, or a new reader one block ahead
        (the blocks themselves, read here, without ``prefetch``)."""
        if self.prefetch <= 0:
            return self._blocks(epoch)
        ahead = self._take_ahead()
        if ahead is not None and ahead[0] == epoch:
            return iter(ahead[1])
        if ahead is not None:
            ahead[1].close()
        return _prefetched(self._blocks(epoch), 1, "recsys-blocks")

    def _produce(self, epoch: int, skip_batches: int) -> Iterator[Batch]:
        emitted = 0
        pending: list[_Block] = []
        pending_rows = 0
        limit = len(self)
        last_block = -(-len(self._groups) // self._groups_per_block) - 1
        for index, block in enumerate(self._block_reader(epoch)):
            if index == last_block and self.last_epoch is not None and epoch < self.last_epoch:
                self.read_ahead(epoch + 1)  # read while this block's batches train
            pending.append(block)
            pending_rows += len(block)
            if pending_rows < self.batch_size:
                continue
            merged = _Block.concat(pending)
            n_full = len(merged) // self.batch_size
            for i in range(n_full):
                if emitted >= limit:
                    return
                if emitted >= skip_batches:
                    yield self._to_batch(merged.take(slice(i * self.batch_size, (i + 1) * self.batch_size)))
                emitted += 1
            rest = merged.take(slice(n_full * self.batch_size, None))
            pending, pending_rows = ([rest], len(rest)) if len(rest) else ([], 0)
        if pending_rows and not self.drop_last and emitted < limit and emitted >= skip_batches:
            yield self._to_batch(_Block.concat(pending))

    def _to_batch(self, block: _Block) -> Batch:
        whole = self._sparse(block) if self.global_sparse else None
        rank, ranks = self.part
        if ranks > 1:
            block = block.take(slice(rank * len(block) // ranks, (rank + 1) * len(block) // ranks))
        sparse = self._sparse(block)
        batch = Batch(
            dense=torch.from_numpy(np.ascontiguousarray(block.dense)),
            sparse=sparse,
            labels=torch.from_numpy(np.ascontiguousarray(block.labels)),
            global_sparse=whole,
        )
        return batch.pinned() if self.pin_memory else batch

    def _sparse(self, block: _Block) -> KeyedJaggedTensor:
        """The block's sparse features as a KeyedJaggedTensor, key-major."""
        n = len(block)
        if block.bags:
            single = {name: i for i, name in enumerate(self._single)}
            values, lengths = [], []
            for name in self.meta.sparse_features:  # key-major, as a KJT lays them out
                if name in single:
                    values.append(block.sparse[single[name]])
                    lengths.append(np.ones(n, np.int32))
                else:
                    values.append(block.bags[name].values)
                    lengths.append(block.bags[name].lengths.astype(np.int32))
            flat_values, flat_lengths = np.concatenate(values), np.concatenate(lengths)
            per_key = [len(v) for v in values]
        else:
            flat_values = np.ascontiguousarray(block.sparse).reshape(-1)
            flat_lengths = np.ones(block.sparse.shape[0] * n, np.int32)
            per_key = [n] * block.sparse.shape[0]
        # ids per key known here, on the host: a KJT moved to a GPU keeps them, so splitting it
        # by key there never waits for the device
        return KeyedJaggedTensor(
            keys=list(self.meta.sparse_features),
            values=torch.from_numpy(flat_values),
            lengths=torch.from_numpy(flat_lengths),
            stride=n,
            length_per_key=per_key,
        )


_DONE = object()


class _ReadAhead:
    """Iterates ``items`` in a background thread, started at once and ``depth`` items ahead;
    an error in the thread is re-raised to the consumer. :meth:`close` stops the thread and
    drops what it holds."""

    def __init__(self, items: Iterator, depth: int, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _work(self, items: Iterator) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    return
                self._queue.put(item)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._queue.put(exc)
            return
        self._queue.put(_DONE)

    def __iter__(self) -> Iterator:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)


def _prefetched(items: Iterator, depth: int, name: str = "recsys-loader") -> Iterator:
    """Run ``items`` in a background thread, ``depth`` items ahead, once the first is asked for."""
    yield from _ReadAhead(items, depth, name)
