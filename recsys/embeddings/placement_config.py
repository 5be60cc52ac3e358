"""Typed config of tiered table placement (light: no torch import).

Tiers, fastest first: ``device`` (GPU memory), ``uvm_cache`` (the table in host memory that the
GPU reads through unified memory, its hottest rows cached in GPU memory by FBGEMM: torchrec's
``fused_uvm_caching`` kernel), ``host`` (RAM; on a GPU read through unified memory, torchrec's
``fused_uvm``) and ``disk`` (CPU: memory-mapped files). Ids are frequency ranks, so the first rows
of every physical table are its hottest: on the CPU a ``ram_budget`` keeps a hot prefix of each
table in RAM and the cold tail in another tier (see :mod:`recsys.embeddings.placement`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from recsys.core.units import parse_bytes

TIERS = ("device", "host", "uvm_cache", "disk")
CUDA_ONLY_TIERS = ("device", "uvm_cache")
CACHE_ALGORITHMS = ("lru", "lfu")


@dataclasses.dataclass
class PlacementConfig:
    """Where the rows of the physical tables live.

    Args:
        ram_budget: bytes (``16GB``) for the hot rows of all tables and the optimizer state of all rows
            (in a sharded run, each rank's: the ranks together hold ``nproc`` times it);
            None keeps every table whole in the ``hot_tier``. CPU only: on a GPU, the
            ``uvm_cache`` tier is FBGEMM's own hot-row cache.
        disk_dir: folder of the cold tables' memory-mapped files (training defaults it to
            ``<run dir>/tables``; elsewhere a temporary folder removed with the model).
        hot_tier: tier of the tables (of their hot prefixes with a ``ram_budget``); None is the
            device's own memory (``device`` on a GPU, ``host`` on the CPU).
        cold_tier: tier of the cold tails (``disk``: a memory-mapped file whose pages the OS
            caches, the fused optimizer writing through; ``host``: RAM).
        cache_load_factor: ``uvm_cache``: rows the GPU cache holds, as a share of all rows
            (FBGEMM's ``cache_load_factor``; torchrec's planner default is 0.2).
        cache_algorithm: ``uvm_cache``: ``lru`` or ``lfu`` eviction.
        read_ahead: a disk tier reads the pages of the next batch's cold rows into the page cache
            while the current step trains (:mod:`recsys.embeddings.disk_prefetch`); False leaves
            them to the lookup's page faults.
    """

    ram_budget: Optional[str] = None  # str or a number of bytes
    disk_dir: Optional[str] = None
    hot_tier: Optional[str] = None
    cold_tier: str = "disk"
    cache_load_factor: float = 0.2
    cache_algorithm: str = "lru"
    read_ahead: bool = True

    def __post_init__(self) -> None:
        for key in ("hot_tier", "cold_tier"):
            tier = getattr(self, key)
            if tier is not None and tier not in TIERS:
                raise ValueError(f"placement.{key}={tier!r} is not one of {list(TIERS)}")
        if self.hot_tier == "disk":
            raise ValueError("placement.hot_tier='disk': the hot tier must be device, uvm_cache or host (disk is a cold_tier)")
        parse_bytes(self.ram_budget or 0, key="placement.ram_budget")  # an unparsable size fails here, naming the key
        if not 0 < self.cache_load_factor <= 1:
            raise ValueError(f"placement.cache_load_factor={self.cache_load_factor} must be in (0, 1]")
        if self.cache_algorithm not in CACHE_ALGORITHMS:
            raise ValueError(f"placement.cache_algorithm={self.cache_algorithm!r} is not one of {list(CACHE_ALGORITHMS)}")

    @property
    def budget_bytes(self) -> Optional[int]:
        if self.ram_budget is None:
            return None
        return parse_bytes(self.ram_budget, key="placement.ram_budget")

    def tier_on(self, device_type: str) -> str:
        """The tier whole tables take on ``device_type``: ``hot_tier``, or the device's own memory."""
        if self.hot_tier is not None:
            return self.hot_tier
        return "device" if device_type == "cuda" else "host"

    def check_device(self, device_type: str) -> None:
        """Refuse tiers the device cannot serve, naming the key."""
        for key in ("hot_tier", "cold_tier"):
            tier = getattr(self, key)
            if tier in CUDA_ONLY_TIERS and device_type != "cuda":
                raise ValueError(f"placement.{key}={tier!r} needs a CUDA device (device is {device_type})")
        if self.ram_budget is not None and device_type == "cuda":
            raise ValueError(
                "placement.ram_budget splits tables between RAM and disk on the CPU; on a GPU set "
                "placement.hot_tier=uvm_cache (tables in host memory, hot rows cached in GPU memory, "
                "placement.cache_load_factor of them) or placement.hot_tier=host"
            )
