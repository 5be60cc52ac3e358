"""Seeded integer hashing on tensors, vectorised and TorchScript-able.

The hashing trick (Weinberger et al., 2009) and unified embedding (Coleman et al., 2023) map
an id to a row with a hash function; different seeds give independent functions (one per
feature, one per probe). We use MurmurHash3's 32-bit finalizer (``fmix32``), a bijection on
32-bit integers with full avalanche, applied to the id's low and high 32-bit halves mixed with
a seed. All arithmetic is on int64 tensors holding unsigned 32-bit values: products may wrap
past 2^63 but the low 32 bits, which are all we keep, are exact.
"""

import torch

_MASK32 = 0xFFFFFFFF
_C1 = 0x85EBCA6B
_C2 = 0xC2B2AE35
_GOLDEN = 0x9E3779B9


def fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3 finalizer on int64 tensors holding values in [0, 2^32).

    (Constants are literals: TorchScript cannot read module globals. 0xFFFFFFFF = _MASK32,
    0x85EBCA6B = _C1, 0xC2B2AE35 = _C2.)
    """
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def seed_key(seed: int) -> int:
    """A well-mixed 32-bit key for ``seed`` (plain int, so it can be baked into a module)."""
    h = (seed * _GOLDEN + 0x7F4A7C15) & _MASK32
    h ^= h >> 16
    h = (h * _C1) & _MASK32
    h ^= h >> 13
    h = (h * _C2) & _MASK32
    return h ^ (h >> 16)


def hash32(ids: torch.Tensor, key: int) -> torch.Tensor:
    """Seeded 32-bit hash of non-negative int64 ids: int64 values in [0, 2^32)."""
    low = ids & 0xFFFFFFFF
    high = (ids >> 32) & 0xFFFFFFFF
    h = fmix32(low ^ key)
    return fmix32(h ^ ((high + key) & 0xFFFFFFFF))


def hash_to_rows(ids: torch.Tensor, key: int, rows: int) -> torch.Tensor:
    """Seeded hash of ids into ``[0, rows)``."""
    return hash32(ids, key) % rows
