"""Run a model over a split and compute its CTR metrics."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from recsys.data.loader import Batch
from recsys.core.metrics import CTRMetrics


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable[Batch], device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities and labels over all batches."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    try:
        for batch in batches:
            logits = model(batch.dense.to(device), batch.sparse.to(device))
            probs.append(torch.sigmoid(logits).float().cpu())
            labels.append(batch.labels)
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("no batches to evaluate")
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def evaluate(model: torch.nn.Module, batches: Iterable[Batch], device: str = "cpu") -> CTRMetrics:
    return CTRMetrics.compute(*predict(model, batches, device))
