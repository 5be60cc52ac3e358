"""Which split each row goes to: whole files by name, or rows by a counter-based hash."""

from __future__ import annotations

import fnmatch

import numpy as np

from recsys.data.config import SplitConfig
from recsys.data.counter_hash import mix_key, splitmix64, unit_uniforms

TRAIN, VALID, TEST = range(3)  # split codes, in the order of layout.SPLITS


def file_split(name: str, split: SplitConfig) -> int | None:
    """The split of a whole file in ``by_file`` mode (``None`` in ``random`` mode)."""
    if split.mode != "by_file":
        return None
    valid = any(fnmatch.fnmatch(name, p) for p in split.valid_files)
    test = any(fnmatch.fnmatch(name, p) for p in split.test_files)
    if valid and test:
        raise ValueError(f"split: file {name} matches both valid_files and test_files")
    return VALID if valid else TEST if test else TRAIN


def random_split(file_index: int, lines: np.ndarray, split: SplitConfig) -> np.ndarray:
    """Split code per row from a splitmix64 hash of (seed, file index, data line number).

    A counter-based hash instead of a sequential RNG makes each row's split a pure function of
    where it is in the input, so it is identical for any ``chunk_bytes``. ``lines`` count data
    lines only (a CSV header is not one), so the TSV and CSV forms of a file split alike.
    """
    key = (np.uint64(file_index) << np.uint64(40)) + lines.astype(np.uint64)
    u = unit_uniforms(splitmix64(key + mix_key(split.seed)))
    codes = np.full(len(lines), TRAIN, dtype=np.int8)
    codes[u < split.valid_fraction + split.test_fraction] = TEST
    codes[u < split.valid_fraction] = VALID
    return codes
