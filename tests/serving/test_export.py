"""Artifacts against the eager model: every method, both formats, raw rows in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.core.checkpoint import load_checkpoint
from recsys.data.ingest import transform_dense
from recsys.data.layout import DatasetMeta, vocab_path
from recsys.data.schema import CRITEO_CATEGORICAL as SPARSE_FEATURES
from recsys.data.schema import CRITEO_DENSE as DENSE_FEATURES
from recsys.data.vocab import Vocabulary
from recsys.models.build import build_model, recipe_from_dict
from recsys.serving.artifact import load_model, read_metadata
from recsys.serving.config import ExportConfig
from recsys.serving.export import export_artifact
from tests.serving.conftest import METHODS, raw_rows, raw_tensors


def eager_probabilities(checkpoint, dataset, rows) -> torch.Tensor:
    """The trained model on rows mapped as ingest maps them (its vocabulary lookup and dense transform)."""
    import pyarrow.parquet as pq

    payload = load_checkpoint(checkpoint)
    meta = DatasetMeta.load(dataset)
    model = build_model(recipe_from_dict(payload["recipe"]), meta)
    model.load_state_dict(payload["model"])
    dense = torch.from_numpy(np.stack([transform_dense(rows.dense[f], meta.dense_transform) for f in DENSE_FEATURES], 1))
    ranks = []
    for f in SPARSE_FEATURES:
        vocab = pq.read_table(vocab_path(dataset, f)).to_pydict()
        lookup = Vocabulary(np.array(vocab["raw"], dtype=np.int64), np.array(vocab["count"], dtype=np.int64)).lookup()
        ranks.append(torch.from_numpy(lookup(rows.sparse[f])[0].astype(np.int64)))
    n = len(rows)
    kjt = KeyedJaggedTensor(keys=list(SPARSE_FEATURES), values=torch.cat(ranks), lengths=torch.ones(n * 26, dtype=torch.int64))
    with torch.no_grad():
        return torch.sigmoid(model.eval()(dense, kjt))


@pytest.mark.parametrize("method, model", [(m, "reference") for m in sorted(METHODS)] + [("full", "kaggle_options")])
def test_fp32_artifacts_score_raw_rows_as_the_eager_model(method, model, checkpoint_for, sample_dataset, tmp_path):
    checkpoint = checkpoint_for(method, model)
    export_artifact(ExportConfig(checkpoint=str(checkpoint), output=str(tmp_path / "artifact")))
    rows = raw_rows()
    expected = eager_probabilities(checkpoint, sample_dataset, rows)
    dense, sparse = raw_tensors(rows)
    for fmt in ("torchscript", "export"):
        got = load_model(tmp_path / "artifact", fmt)(dense, sparse)
        assert got.shape == (len(rows),) and got.dtype == torch.float32
        assert (got - expected).abs().max().item() <= 1e-6, fmt
        one = load_model(tmp_path / "artifact", fmt)(dense[:1], sparse[:1])  # batch 1 too
        assert (one - expected[:1]).abs().max().item() <= 1e-6, fmt
    metadata = read_metadata(tmp_path / "artifact")
    assert [f["method"] for f in metadata["plan"]["features"]] == [METHODS[method]["method"]] * 26
