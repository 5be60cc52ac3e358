"""Shared fixtures: a small prepared dataset in the on-disk layout, with a learnable signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data.layout import LABEL, DatasetMeta, shard_path, shard_schema
from recsys.data.schema import CRITEO_CATEGORICAL, CRITEO_DENSE

REPO = Path(__file__).resolve().parents[1]


def write_tiny_dataset(root: Path, rows: dict[str, int], cardinality: int = 50, seed: int = 0, row_group: int = 256) -> DatasetMeta:
    """Random rows whose label depends on C1's id and I1, so a model can learn something."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 2, cardinality)
    for split, n in rows.items():
        sparse = rng.integers(0, cardinality, size=(len(CRITEO_CATEGORICAL), n))
        dense = rng.exponential(1.0, size=(n, len(CRITEO_DENSE))).astype(np.float32)
        logit = effect[sparse[0]] + dense[:, 0] - 1.0
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        cols = {LABEL: label}
        cols.update({name: dense[:, i] for i, name in enumerate(CRITEO_DENSE)})
        cols.update({name: sparse[i].astype(np.int32) for i, name in enumerate(CRITEO_CATEGORICAL)})
        path = shard_path(root, split, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols, schema=shard_schema(list(CRITEO_DENSE), list(CRITEO_CATEGORICAL))), path,
                       row_group_size=row_group)
    meta = DatasetMeta(
        num_embeddings={f: cardinality + 1 for f in CRITEO_CATEGORICAL},
        rows=dict(rows),
        dense_features=list(CRITEO_DENSE),
        sparse_features=list(CRITEO_CATEGORICAL),
        source={"kind": "test-fixture"},
    )
    meta.save(root)
    return meta


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_dataset")
    write_tiny_dataset(root, {"train": 4096, "valid": 1024, "test": 1024})
    return root


@pytest.fixture
def dataset_writer():
    """:func:`write_tiny_dataset`, for tests that need a dataset of their own shape."""
    return write_tiny_dataset


@pytest.fixture
def full_tables():
    """Build a full-table embedding collection from {feature: rows} and a dim."""
    from recsys.embeddings.build import make_embedding
    from recsys.embeddings.plan import FeatureInfo
    from recsys.embeddings.specs import TableOptimizerConfig

    def build(sizes: dict, dim: int):
        return make_embedding({"method": "full"}, [FeatureInfo(f, n) for f, n in sizes.items()], dim, TableOptimizerConfig())

    return build
