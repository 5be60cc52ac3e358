"""Assemble a DLRM for a prepared dataset from a :class:`~recsys.models.config.ModelRecipe`."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from recsys.data.layout import DatasetMeta
from recsys.embeddings.build import build_embedding
from recsys.models.config import ModelArch, ModelRecipe
from recsys.models.dlrm import DLRM
from recsys.models.fm import FactorizationMachine


def build_model(
    recipe: ModelRecipe, meta: DatasetMeta, device: torch.device | str = "cpu", shardable: bool = False
) -> DLRM | FactorizationMachine:
    """DLRM (or, with ``model.arch=fm``, a factorization machine) over the embedding
    ``recipe.embedding`` asks for, sized by ``meta``; the vocabulary counts of
    ``recipe.data_path`` feed the methods that need them. ``shardable``: tables in a torchrec
    collection for DistributedModelParallel (see :mod:`recsys.train.distributed`)."""
    embedding = build_embedding(
        recipe.embedding,
        meta,
        recipe.data_path,
        recipe.model.embedding_dim,
        recipe.table_optimizer,
        device=device,
        seed=recipe.seed,
        shardable=shardable,
        placement=recipe.placement,
    )
    num_dense = len(meta.dense_features)
    if ModelArch(recipe.model.arch) is ModelArch.fm:
        model = FactorizationMachine(embedding, num_dense, recipe.model.embedding_dim)
    else:
        model = DLRM(embedding, num_dense=num_dense, config=recipe.model)
    return model.to(torch.device(device))


def recipe_from_dict(raw: Mapping[str, Any]) -> ModelRecipe:
    """A recipe from its plain-dict form (as checkpoints store it), typed and validated."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelRecipe), dict(raw)))


def recipe_to_dict(recipe: ModelRecipe) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(recipe), enum_to_str=True)
