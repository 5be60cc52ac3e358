"""Assemble a DLRM for a prepared dataset from a training job's config."""

from __future__ import annotations

import torch

from recsys.data.layout import DatasetMeta
from recsys.embeddings.build import build_embedding
from recsys.models.dlrm import DLRM
from recsys.train.config import TrainJobConfig


def build_model(cfg: TrainJobConfig, meta: DatasetMeta) -> DLRM:
    embedding = build_embedding(
        cfg.embedding,
        {f: meta.num_embeddings[f] for f in meta.sparse_features},
        cfg.model.embedding_dim,
        cfg.trainer.table_optimizer,
        device=cfg.device,
        seed=cfg.trainer.seed,
    )
    return DLRM(embedding, num_dense=len(meta.dense_features), config=cfg.model).to(torch.device(cfg.device))
