"""recsys: memory-efficient embedding tables for click-through-rate recommendation."""

__version__ = "0.1.0"
