"""Reading the cold rows a batch needs from disk before its lookup touches them.

The cold tails of tiered tables (:mod:`recsys.embeddings.placement`) are memory-mapped files.
A lookup that touches a row whose page is not in the page cache stops on a page fault until
the disk returns it, one fault after another: with the files larger than RAM, a step waited on
hundreds of serial reads. :class:`RowPrefetcher` reads every page a batch's cold rows sit on
into the page cache from a pool of threads, so that many reads are in flight at once and the
faults that follow find the pages cached.

Read-ahead is pipelined like FBGEMM's SSD-tier prefetch and torchrec's prefetch pipeline
(``TrainPipelinePrefetch``): :meth:`RowPrefetcher.start` returns at once with a
:class:`ReadAhead` for the next batch while the current step computes, and the lookup of that
batch waits on it (usually done by then). Reading through the page cache keeps this exact
whatever the order: a page read ahead before a step's backward wrote its row holds the new
values once the backward has written them, because the mapping and the file share the cached
page. The mappings are marked for random access (``madvise(MADV_RANDOM)``): a fault then reads
its own page, not the 128 KB of readahead meant for sequential reads.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_MADV_RANDOM = 1


def _read_pages(fd: int, pages: list[int]) -> None:
    for page in pages:  # the read releases the GIL while the kernel waits on the disk
        os.pread(fd, 1, page * PAGE_BYTES)  # one byte brings its whole page into the page cache


def advise_random_access(mapped: torch.Tensor) -> None:
    """Tell the kernel the pages of ``mapped`` (a memory-mapped tensor) are read at random."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = mapped.numel() * mapped.element_size()
    if size and libc.madvise(ctypes.c_void_p(mapped.data_ptr()), ctypes.c_size_t(size), _MADV_RANDOM) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_RANDOM) failed on a cold table file")


class ReadAhead:
    """The pages of one batch's cold rows being read into the page cache.

    ``tables`` / ``rows`` (N,) say which rows it was started for, so that a lookup can tell
    whether its own rows are the ones being read.
    """

    def __init__(self, tables: torch.Tensor, rows: torch.Tensor, pages: int, reads: list[Future]) -> None:
        self.tables, self.rows, self.pages = tables, rows, pages
        self._reads = reads

    def covers(self, tables: torch.Tensor, rows: torch.Tensor) -> bool:
        """Whether this read-ahead was started for exactly these rows."""
        return torch.equal(self.rows, rows) and torch.equal(self.tables, tables)

    def wait(self) -> int:
        """Block until every page is cached; returns how many pages were read ahead."""
        for read in self._reads:
            read.result()  # an I/O error surfaces here
        return self.pages


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
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)  # a read brings its own page only, no readahead
        self.starts = torch.tensor(starts, dtype=torch.int64)
        self.row_bytes = torch.tensor(row_bytes, dtype=torch.int64)
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="recsys-prefetch")

    def pages(self, tables: torch.Tensor, rows: torch.Tensor) -> list[int]:
        """The distinct pages of the file that ``rows`` (N,) of ``tables`` (N,) sit on."""
        first = self.starts[tables] + rows * self.row_bytes[tables]  # (N,) byte offset of each row
        last = first + self.row_bytes[tables] - 1  # a row may straddle two pages
        return torch.unique(torch.cat([first, last]) // PAGE_BYTES).tolist()

    def start(self, tables: torch.Tensor, rows: torch.Tensor) -> ReadAhead:
        """Start reading the pages of ``rows`` (N,) of ``tables`` (N,) in the background."""
        pages = self.pages(tables, rows)
        chunks = [pages[i :: self.threads] for i in range(min(self.threads, len(pages)))]
        return ReadAhead(tables, rows, len(pages), [self.pool.submit(_read_pages, self.fd, chunk) for chunk in chunks])

    def __call__(self, tables: torch.Tensor, rows: torch.Tensor) -> int:
        """Read the pages of ``rows`` (N,) of ``tables`` (N,) into the page cache now; returns how many."""
        return self.start(tables, rows).wait()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.close()
