"""Serving fixtures: the bundled real Criteo sample, prepared by ingest, and checkpoints of
DLRMs over it for every embedding method (random weights: exporting needs no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO

SAMPLE = REPO / "datasets" / "criteo_1tb_sample_1k.tsv"
TINY_MODEL = {"embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [16, 1]}
# the reference DLRM, and one with the options conf/model/kaggle.yaml turns on (recsys.models.dlrm)
MODELS = {
    "reference": TINY_MODEL,
    "kaggle_options": {**TINY_MODEL, "fm_component": True, "first_order": True, "dense_norm": True, "bottom_last_relu": False},
}
METHODS = {
    "full": {"method": "full"},
    "hash": {"method": "hash", "compression": 4},
    "qr": {"method": "qr", "collisions": 4},
    "qr_add": {"method": "qr", "collisions": 4, "operation": "add"},
    "md": {"method": "md", "alpha": 0.5},
    "unified": {"method": "unified", "compression": 4},
    "optembed": {"method": "optembed", "network": "compact"},
}


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """The real sample, every row in train (so its Parquet rows are the file's rows, in order)."""
    from recsys.data.config import PreprocessConfig, SplitConfig
    from recsys.data.ingest import preprocess

    out = tmp_path_factory.mktemp("sample") / "dataset"
    preprocess(PreprocessConfig(input=str(SAMPLE), output=str(out), min_count=2,
                                split=SplitConfig(valid_fraction=0.0, test_fraction=0.0)), progress=False)
    return out


def optembed_artifacts(directory: Path, dataset: Path) -> str:
    """Masks (a random half of each table's rows kept) and searched dims, as the search writes them."""
    from recsys.data.layout import DatasetMeta
    from recsys.embeddings.optembed_artifacts import save_dims, save_masks

    meta = DatasetMeta.load(dataset)
    gen = torch.Generator().manual_seed(3)
    kept = {f: torch.rand(n, generator=gen) < 0.5 for f, n in meta.num_embeddings.items()}
    save_masks(directory, kept, {f: 0.1 for f in kept})
    save_dims(directory, {f: 4 if i % 2 else 8 for i, f in enumerate(meta.sparse_features)})
    return str(directory)


@pytest.fixture(scope="session")
def checkpoint_for(sample_dataset, tmp_path_factory):
    """checkpoint_for(method, model) → a checkpoint file of a DLRM (``MODELS[model]``) with that
    embedding over the sample. Batch norms get running statistics other than the identity's."""
    from recsys.core.checkpoint import checkpoint_path, make_payload, save_checkpoint
    from recsys.data.layout import DatasetMeta
    from recsys.models.build import build_model, recipe_from_dict, recipe_to_dict

    made: dict[str, Path] = {}

    def make(method: str, model_name: str = "reference") -> Path:
        key = f"{method}_{model_name}"
        if key not in made:
            run = tmp_path_factory.mktemp(f"run_{key}")
            embedding = dict(METHODS[method])
            if method == "optembed":
                embedding["artifacts"] = optembed_artifacts(run / "optembed", sample_dataset)
            recipe = recipe_from_dict({"model": MODELS[model_name], "embedding": embedding,
                                       "data_path": str(sample_dataset), "seed": 1})
            torch.manual_seed(1)
            model = build_model(recipe, DatasetMeta.load(sample_dataset))
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm1d):
                    module.running_mean.uniform_(0.0, 2.0)
                    module.running_var.uniform_(0.5, 4.0)
            payload = make_payload(model=model.state_dict(), recipe=recipe_to_dict(recipe), state={"step": 0}, config={})
            made[key] = save_checkpoint(checkpoint_path(run, 0), payload)
        return made[key]

    return make


def raw_rows(path: Path = SAMPLE):
    """The sample's rows parsed by ingest's own parser: (labels, dense Arrow columns, raw ids)."""
    from recsys.data import raw
    from recsys.data.parse import parse_chunk
    from recsys.data.schema import SchemaConfig

    data = path.read_bytes()
    rows = parse_chunk(raw.Chunk(data, 1, data.count(b"\n")), raw.RawLayout(SchemaConfig(), "\t", False))
    assert not rows.bad
    return rows


def raw_tensors(rows) -> tuple[torch.Tensor, torch.Tensor]:
    """The artifact's inputs for parsed rows: raw dense (missing = -1) and raw ids."""
    from recsys.data.schema import CRITEO_CATEGORICAL as SPARSE_FEATURES
    from recsys.data.schema import CRITEO_DENSE as DENSE_FEATURES

    dense = np.stack([rows.dense[f].fill_null(-1).to_numpy() for f in DENSE_FEATURES], axis=1)
    sparse = np.stack([rows.sparse[f] for f in SPARSE_FEATURES], axis=1)
    return torch.from_numpy(dense.astype(np.int64)), torch.from_numpy(sparse.astype(np.int64))
