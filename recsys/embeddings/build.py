"""Build the embedding module a config asks for."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.tables import TableOptimizerConfig

METHODS = ("full",)


def embedding_method(cfg: Any) -> str:
    method = cfg.get("method") if isinstance(cfg, (dict, DictConfig)) else getattr(cfg, "method", None)
    if method not in METHODS:
        raise ValueError(f"embedding.method={method!r} is not one of {METHODS}")
    return method


def build_embedding(
    cfg: Any,
    num_embeddings: dict[str, int],
    dim: int,
    optimizer: TableOptimizerConfig,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> EmbeddingCollection:
    """The embedding module for ``cfg`` (a dataclass, dict or DictConfig with ``method``)."""
    embedding_method(cfg)
    if isinstance(cfg, DictConfig):
        extra = set(OmegaConf.to_container(cfg)) - {"method"}
        if extra:
            raise ValueError(f"embedding.method=full takes no options, got {sorted(extra)}")
    return EmbeddingCollection(num_embeddings, dim, optimizer, device=device, seed=seed)
