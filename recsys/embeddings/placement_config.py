"""Typed config of tiered table placement (light: no torch import).

Ids are frequency ranks, so the first rows of every physical table are its hottest. With a
``ram_budget`` the lookup keeps a hot prefix of each table in RAM and the cold tail in another
tier (see :mod:`recsys.embeddings.placement`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from recsys.core.units import parse_bytes

TIERS = ("device", "host", "uvm_cache", "disk")
CUDA_ONLY_TIERS = ("device", "uvm_cache")


@dataclasses.dataclass
class PlacementConfig:
    """Where the rows of the physical tables live.

    Args:
        ram_budget: bytes (``16GB``) for the hot rows of all tables and their optimizer state;
            None keeps every table whole in the ``hot_tier``.
        disk_dir: folder of the cold tables' memory-mapped files (training defaults it to
            ``<run dir>/tables``; elsewhere a temporary folder removed with the model).
        hot_tier: tier of the hot prefixes (``host``; ``device``/``uvm_cache`` need CUDA).
        cold_tier: tier of the cold tails (``disk``: a memory-mapped file whose pages the OS
            caches, the fused optimizer writing through; ``host``: RAM).
    """

    ram_budget: Optional[str] = None  # str or a number of bytes
    disk_dir: Optional[str] = None
    hot_tier: str = "host"
    cold_tier: str = "disk"

    def __post_init__(self) -> None:
        for key in ("hot_tier", "cold_tier"):
            if getattr(self, key) not in TIERS:
                raise ValueError(f"placement.{key}={getattr(self, key)!r} is not one of {list(TIERS)}")
        parse_bytes(self.ram_budget or 0, key="placement.ram_budget")  # an unparsable size fails here, naming the key

    @property
    def budget_bytes(self) -> Optional[int]:
        if self.ram_budget is None:
            return None
        return parse_bytes(self.ram_budget, key="placement.ram_budget")

    def check_device(self, device_type: str) -> None:
        """Refuse tiers the device cannot serve, naming the key."""
        for key in ("hot_tier", "cold_tier"):
            tier = getattr(self, key)
            if tier in CUDA_ONLY_TIERS and device_type != "cuda":
                raise ValueError(f"placement.{key}={tier!r} needs a CUDA device (device is {device_type})")
            if tier in CUDA_ONLY_TIERS:
                raise NotImplementedError(f"placement.{key}={tier!r} is not built yet; use host or disk")
