"""Build the embedding module a config asks for, for a prepared dataset's features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from recsys.data.layout import DatasetMeta, read_vocab_counts
from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.compiler import compile_plan
from recsys.embeddings.embedding_config import parse_embedding_config
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig

_NEEDS_COUNTS = {"md"}


def dataset_features(meta: DatasetMeta, root: str | Path | None, with_counts: bool) -> list[FeatureInfo]:
    """FeatureInfo per sparse feature; with training counts from the vocabularies if asked."""
    return [
        FeatureInfo(
            name,
            meta.num_embeddings[name],
            read_vocab_counts(root, name, meta.num_embeddings[name]) if with_counts and root is not None else None,
        )
        for name in meta.sparse_features
    ]


def build_embedding(
    cfg: Any,
    meta: DatasetMeta,
    root: str | Path | None,
    dim: int,
    optimizer: TableOptimizerConfig,
    device: torch.device | str = "cpu",
    seed: int = 0,
    shardable: bool = False,
    placement: PlacementConfig | None = None,
) -> EmbeddingCollection:
    """The embedding module for ``cfg`` over a prepared dataset's sparse features."""
    setup = parse_embedding_config(cfg)
    features = dataset_features(meta, root, with_counts=bool(setup.methods & _NEEDS_COUNTS))
    return make_embedding(setup, features, dim, optimizer, device=device, seed=seed, shardable=shardable, placement=placement)


def make_embedding(
    cfg: Any,
    features: list[FeatureInfo],
    dim: int,
    optimizer: TableOptimizerConfig,
    device: torch.device | str = "cpu",
    seed: int = 0,
    shardable: bool = False,
    placement: PlacementConfig | None = None,
) -> EmbeddingCollection:
    """The embedding module for ``cfg`` (a mapping, DictConfig or parsed setup with ``method``
    and options) over explicitly given features; ``shardable`` for a sharded run and
    ``placement`` for tiers (see :class:`~recsys.embeddings.collection.EmbeddingCollection`)."""
    plan = compile_plan(parse_embedding_config(cfg), features, dim, TableOptimizer(optimizer.kind))
    return EmbeddingCollection(plan, optimizer, device=device, seed=seed, shardable=shardable, placement=placement)
