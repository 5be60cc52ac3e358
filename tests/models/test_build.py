"""Rebuilding a trained model from its checkpoint (recsys.models.build.load_trained_model)."""

from __future__ import annotations

import pytest
import torch

from recsys.core.checkpoint import checkpoint_path, make_payload, save_checkpoint
from recsys.data.layout import DatasetMeta
from recsys.models.build import build_model, load_trained_model, recipe_from_dict, recipe_to_dict

TINY = {"embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16, 1]}


def saved_model(run, dataset):
    recipe = recipe_from_dict({"model": TINY, "embedding": {"method": "qr", "collisions": 4},
                               "data_path": str(dataset), "seed": 1})
    torch.manual_seed(1)
    model = build_model(recipe, DatasetMeta.load(dataset))
    save_checkpoint(checkpoint_path(run, 7), make_payload(model=model.state_dict(), recipe=recipe_to_dict(recipe),
                                                         state={"step": 7}, config={}))
    return model


def test_the_rebuilt_model_has_the_saved_weights_and_says_where_it_came_from(tiny_dataset, tmp_path):
    model = saved_model(tmp_path, tiny_dataset)
    trained = load_trained_model(tmp_path)  # a run directory: its latest checkpoint
    assert trained.checkpoint == checkpoint_path(tmp_path, 7) and trained.payload["state"]["step"] == 7
    assert trained.data_path == str(tiny_dataset) and trained.meta == DatasetMeta.load(tiny_dataset)
    saved, rebuilt = model.state_dict(), trained.model.state_dict()
    assert saved.keys() == rebuilt.keys() and all(torch.equal(saved[k], rebuilt[k]) for k in saved)


def test_another_dataset_with_other_table_sizes_is_refused(tiny_dataset, dataset_writer, tmp_path):
    saved_model(tmp_path / "run", tiny_dataset)
    other = tmp_path / "other"
    dataset_writer(other, {"train": 64, "test": 64}, cardinality=20)
    with pytest.raises(ValueError, match="ids would not mean the same rows"):
        load_trained_model(tmp_path / "run", str(other))
    same_sizes = tmp_path / "same"
    dataset_writer(same_sizes, {"train": 64, "test": 64}, seed=5)  # other rows, same tables: allowed
    assert load_trained_model(tmp_path / "run", str(same_sizes)).data_path == str(same_sizes)
