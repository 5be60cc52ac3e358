"""Counter-based hashing: the splitmix64 finaliser, elementwise on numpy arrays.

One pure function of its input, with no state, so a value derived from it (a row's split, a
synthetic id's parameters, a string id's 63-bit key) depends only on *what* is hashed, never
on the order or chunking in which rows are processed. splitmix64 is the output function of
Steele, Lea and Flood, "Fast splittable pseudorandom number generators" (OOPSLA 2014).
"""

from __future__ import annotations

import numpy as np

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of ``x + GOLDEN_GAMMA``, elementwise on uint64 (wrapping)."""
    x = x + GOLDEN_GAMMA
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def mix_key(*parts: int) -> np.uint64:
    """A 64-bit key mixed from small non-negative integers (a seed and what it is for)."""
    key = np.zeros(1, np.uint64)
    for part in parts:
        key = splitmix64(key ^ np.uint64(part))
    return key[0]


def unit_uniforms(h: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1) from the top 53 bits of uint64 hashes."""
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
