"""Run a model over a split: each row's click probability, with its label."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from recsys.data.loader import Batch


@torch.no_grad()
def predict_batches(model: torch.nn.Module, batches: Iterable[Batch], device: str = "cpu") -> list[tuple[np.ndarray, np.ndarray]]:
    """Click probabilities and labels of each batch, in the batches' order."""
    was_training = model.training
    model.eval()
    parts = []
    try:
        for batch in batches:
            logits = model(batch.dense.to(device), batch.sparse.to(device))
            parts.append((torch.sigmoid(logits).float().cpu().numpy(), batch.labels.numpy()))
    finally:
        model.train(was_training)
    return parts


def predict(model: torch.nn.Module, batches: Iterable[Batch], device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities and labels over all batches."""
    return joined(predict_batches(model, batches, device))


def joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-batch (probabilities, labels) as two arrays; no batches is an error."""
    if not parts:
        raise ValueError("no batches to evaluate")
    return np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])
