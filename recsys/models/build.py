"""Assemble a DLRM for a prepared dataset from a :class:`~recsys.models.config.ModelRecipe`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from recsys.core.checkpoint import load_checkpoint, resolve_checkpoint
from recsys.data.layout import DatasetMeta
from recsys.embeddings.build import build_embedding
from recsys.embeddings.saved_tables import saved_tables
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
        model = DLRM(embedding, num_dense=num_dense, config=recipe.model, device=device)
    return model.to(torch.device(device))


@dataclasses.dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint with its weights, and what it was rebuilt from."""

    model: DLRM | FactorizationMachine
    recipe: ModelRecipe
    checkpoint: Path  # the checkpoint file (or sharded checkpoint directory)
    payload: dict[str, Any]  # the checkpoint's contents (state, recipe, weights)
    data_path: str  # the dataset the model is sized for and reads
    meta: DatasetMeta


def load_trained_model(checkpoint: str | os.PathLike, data_path: str | None = None) -> TrainedModel:
    """The model saved in ``checkpoint`` (a run directory, a ``step_*.pt`` or a sharded run's
    ``step_*.dcp``), rebuilt from its recipe (no training code) over ``data_path``, by default
    the dataset it was trained on.

    Raises:
        ValueError: ``data_path``'s tables differ in size from the training dataset's, so its
            ids would not mean the same rows.
    """
    path = resolve_checkpoint(checkpoint)
    payload = load_checkpoint(path)
    recipe = recipe_from_dict(payload["recipe"])
    data_path = data_path or recipe.data_path
    meta = DatasetMeta.load(data_path)
    trained_on = recipe.data_path
    if data_path != trained_on:
        trained_meta = DatasetMeta.load(trained_on) if Path(trained_on, "meta.json").exists() else None
        if trained_meta and trained_meta.num_embeddings != meta.num_embeddings:
            raise ValueError(
                f"{data_path} has table sizes {meta.num_embeddings}, but the checkpoint was trained on "
                f"{trained_on} with {trained_meta.num_embeddings}: ids would not mean the same rows"
            )
    model = build_model(recipe, meta)
    load_weights(model, payload, optimizer_state=False)  # scoring needs no optimizer state
    return TrainedModel(model, recipe, path, payload, data_path, meta)


LOOKUP_PREFIX = "embedding.lookup."  # the tables' keys in a model's state dict


def load_weights(model: DLRM | FactorizationMachine, payload: Mapping[str, Any], optimizer_state: bool = True) -> None:
    """Put a checkpoint payload's weights into a one-process ``model``.

    A one-process checkpoint is the model's state dict; a sharded one (``tables`` in the
    payload, see :func:`recsys.core.checkpoint.load_checkpoint`) has every other key in
    ``model`` and each physical table whole. A one-process checkpoint whose tables another
    layout held (tiered or not, :func:`~recsys.embeddings.saved_tables.saved_tables`) loads table
    by table. ``optimizer_state=False`` skips the tables' fused-optimizer state (evaluation and
    export need the weights only)."""
    state, tables = payload["model"], payload.get("tables")
    if tables is None:
        if _lookup_keys(state) == _lookup_keys(model.state_dict()):
            model.load_state_dict(state)
            return
        tables = saved_lookup_tables(payload, model)
    load_all_but_tables(model, state)
    lookup = model.embedding.lookup
    if not hasattr(lookup, "load_tables"):
        raise NotImplementedError(f"loading whole tables into a {type(lookup).__name__} is not built")
    lookup.load_tables(tables, optimizer_state)


def load_all_but_tables(model: DLRM | FactorizationMachine, state: Mapping[str, Any]) -> None:
    """Load every key of a saved state dict but the tables' (``LOOKUP_PREFIX``) into ``model``,
    one-process or sharded; any other key missing on either side is an error."""
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if not k.startswith(LOOKUP_PREFIX)}, strict=False)
    stray = unexpected + [k for k in missing if not k.startswith(LOOKUP_PREFIX)]
    if stray:
        raise KeyError(f"checkpoint keys do not match the model: {stray[:8]}")


def saved_lookup_tables(payload: Mapping[str, Any], model: DLRM | FactorizationMachine) -> dict:
    """The whole tables of a one-process checkpoint, by name, as views of its state (see
    :func:`~recsys.embeddings.saved_tables.saved_tables`), for ``model``'s plan."""
    saved = recipe_from_dict(payload["recipe"])
    plan = model.embedding.plan
    tables = saved_tables(payload["model"], LOOKUP_PREFIX, plan.tables, saved.table_optimizer, saved.placement)
    if tables is None:
        raise ValueError(
            "the checkpoint's tables are not this model's: it holds a lookup over other tables than "
            f"{', '.join(t.name for t in plan.tables)} (a checkpoint of another embedding plan)"
        )
    return tables


def _lookup_keys(state: Mapping[str, Any]) -> set[str]:
    return {k for k in state if k.startswith(LOOKUP_PREFIX)}


def recipe_from_dict(raw: Mapping[str, Any]) -> ModelRecipe:
    """A recipe from its plain-dict form (as checkpoints store it), typed and validated."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelRecipe), dict(raw)))


def recipe_to_dict(recipe: ModelRecipe) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(recipe), enum_to_str=True)
