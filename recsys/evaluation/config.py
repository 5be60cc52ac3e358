"""Typed configs of the evaluation layer (light: no torch import)."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class EvalJobConfig:
    """``recsys-eval``: score a checkpoint on a split.

    Args:
        checkpoint: a ``step_*.pt`` file or a training run directory (its latest checkpoint).
        data_path: dataset to score; defaults to the one the model was trained on.
        split: ``train``, ``valid`` or ``test``.
        batch_size: rows per scoring batch.
        max_batches: score only the first batches (None: the whole split).
    """

    checkpoint: str = "???"
    data_path: Optional[str] = None
    split: str = "test"
    batch_size: int = 16384
    max_batches: Optional[int] = None
