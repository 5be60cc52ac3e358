"""Assemble a DLRM for a prepared dataset from a training job's config."""

from __future__ import annotations

import torch

from recsys.data.layout import DatasetMeta
from recsys.embeddings.build import build_embedding
from recsys.models.dlrm import DLRM
from recsys.train.config import TrainJobConfig


def build_model(cfg: TrainJobConfig, meta: DatasetMeta, root: str | None = None) -> DLRM:
    """DLRM over the embedding ``cfg.embedding`` asks for; ``root`` (default ``cfg.data.path``)
    supplies the vocabularies' frequency counts when a method needs them."""
    embedding = build_embedding(
        cfg.embedding,
        meta,
        root if root is not None else cfg.data.path,
        cfg.model.embedding_dim,
        cfg.trainer.table_optimizer,
        device=cfg.device,
        seed=cfg.trainer.seed,
    )
    return DLRM(embedding, num_dense=len(meta.dense_features), config=cfg.model).to(torch.device(cfg.device))
