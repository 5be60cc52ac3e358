"""Raw Criteo features → the model's inputs, inside the artifact (no train/serve skew).

Ingest (:mod:`recsys.data.ingest`) turns a raw dense integer into ``log1p(max(x, 0))`` (missing
counts as 0) and a raw categorical id into its frequency rank in the training vocabulary, ids
not kept going to the feature's shared OOV row (the last one). :class:`RawFeatures` does the
same with tensors, so an artifact scores raw rows exactly as the model saw its training rows:

- dense: any negative value is the missing sentinel (missing and negative both become 0, as in
  ingest), then ``log1p`` in float64, rounded to float32 as ingest rounds it;
- sparse: all features' vocabularies are one sorted int64 key array, key = feature · 2^33 +
  raw id + 1 (raw ids are 32-bit, -1 is "missing"), so ONE ``searchsorted`` maps a (B, F) batch
  of raw ids to ranks; a key that is not there, or a raw id outside [-1, 2^32), is the OOV row.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

RAW_ID_BITS = 33  # raw ids + 1 lie in [0, 2^33): 32-bit hex ids and the missing id -1


def vocabulary_keys(vocabularies: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted keys, rank of each key) over all features' vocabularies.

    ``vocabularies[f]`` holds feature f's kept raw ids in rank order (row r = rank r).
    """
    keys, ranks = [], []
    for f, raw in enumerate(vocabularies):
        raw = np.asarray(raw, dtype=np.int64)
        if raw.size and (raw.min() < -1 or raw.max() >= 1 << (RAW_ID_BITS - 1)):
            raise ValueError(f"feature {f}: raw ids must lie in [-1, 2^32), got [{raw.min()}, {raw.max()}]")
        keys.append((f << RAW_ID_BITS) + raw + 1)
        ranks.append(np.arange(raw.size, dtype=np.int64))
    key = np.concatenate(keys) if keys else np.empty(0, np.int64)
    rank = np.concatenate(ranks) if ranks else np.empty(0, np.int64)
    order = np.argsort(key, kind="stable")
    return torch.from_numpy(key[order].copy()), torch.from_numpy(rank[order].copy())


class RawFeatures(nn.Module):
    """Raw dense (B, 13) int64 and raw ids (B, 26) int64 → dense (B, 13) float32, ranks (B, 26) int64.

    Args:
        vocabularies: per sparse feature, the kept raw ids in rank order.
        oov_rows: per sparse feature, its OOV row (``num_embeddings - 1``).
        log1p: whether dense values go through ``log1p`` (the dataset's ``dense_transform``).
    """

    def __init__(self, vocabularies: list[np.ndarray], oov_rows: list[int], log1p: bool) -> None:
        super().__init__()
        keys, ranks = vocabulary_keys(vocabularies)
        self.register_buffer("keys", keys)
        self.register_buffer("ranks", ranks)
        self.register_buffer("oov", torch.tensor(oov_rows, dtype=torch.int64))
        self.register_buffer("feature_base", torch.arange(len(oov_rows), dtype=torch.int64) << RAW_ID_BITS)
        self.log1p = log1p
        self.max_raw_id = (1 << (RAW_ID_BITS - 1)) - 1

    def dense(self, raw: torch.Tensor) -> torch.Tensor:
        values = raw.clamp(min=0).to(torch.float64)
        if self.log1p:
            values = torch.log1p(values)
        return values.to(torch.float32)  # (B, 13)

    def sparse(self, raw: torch.Tensor) -> torch.Tensor:
        in_range = (raw >= -1) & (raw <= self.max_raw_id)
        key = self.feature_base + (raw.clamp(-1, self.max_raw_id) + 1)  # (B, F)
        if self.keys.numel() == 0:
            return self.oov.expand_as(raw).clone()
        pos = torch.searchsorted(self.keys, key).clamp(max=self.keys.numel() - 1)  # (B, F)
        found = (self.keys[pos] == key) & in_range
        return torch.where(found, self.ranks[pos], self.oov.expand_as(raw))  # (B, F)
