"""Reading the cold rows a batch needs from disk before its lookup touches them.

The cold tails of tiered tables (:mod:`recsys.embeddings.placement`) are memory-mapped files.
A lookup that touches a row whose page is not in the page cache stops on a page fault until
the disk returns it, one fault after another: with the files larger than RAM, a step waited on
hundreds of serial reads. Before the lookup, :class:`RowPrefetcher` asks the kernel to read
every page the batch's cold rows sit on (``posix_fadvise(WILLNEED)``), from a pool of threads so
that many reads are in flight at once (under memory pressure each call waits for its read: ~670
pages a step took 0.15-1.1 s from one thread), so the faults that follow find the pages cached.
The mappings are also marked for random access (``madvise(MADV_RANDOM)``): a fault then reads its
own page, not the 128 KB of readahead meant for sequential reads.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_MADV_RANDOM = 1


def _read_ahead(fd: int, pages: list[int]) -> None:
    for page in pages:  # the call releases the GIL while the kernel reads
        os.posix_fadvise(fd, page * PAGE_BYTES, PAGE_BYTES, os.POSIX_FADV_WILLNEED)


def advise_random_access(mapped: torch.Tensor) -> None:
    """Tell the kernel the pages of ``mapped`` (a memory-mapped tensor) are read at random."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = mapped.numel() * mapped.element_size()
    if size and libc.madvise(ctypes.c_void_p(mapped.data_ptr()), ctypes.c_size_t(size), _MADV_RANDOM) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_RANDOM) failed on a cold table file")


class RowPrefetcher:
    """Reads into the page cache the pages that given rows of given tables sit on in one file.

    Args:
        path: the file (the cold tables' weights, table after table).
        starts: byte offset of each table's first row in it.
        row_bytes: each table's bytes per row (dim * 4).
        threads: reads in flight at once.
    """

    def __init__(self, path: Path, starts: list[int], row_bytes: list[int], threads: int = 32) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.starts = torch.tensor(starts, dtype=torch.int64)
        self.row_bytes = torch.tensor(row_bytes, dtype=torch.int64)
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="recsys-prefetch")

    def __call__(self, tables: torch.Tensor, rows: torch.Tensor) -> int:
        """Read the pages of ``rows`` (N,) of ``tables`` (N,) into the page cache; returns how many."""
        first = self.starts[tables] + rows * self.row_bytes[tables]  # (N,) byte offset of each row
        last = first + self.row_bytes[tables] - 1  # a row may straddle two pages
        pages = torch.unique(torch.cat([first, last]) // PAGE_BYTES).tolist()
        chunks = [pages[i :: self.threads] for i in range(min(self.threads, len(pages)))]
        list(self.pool.map(_read_ahead, [self.fd] * len(chunks), chunks))
        return len(pages)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.close()
