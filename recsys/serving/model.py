"""The served model: raw Criteo rows in, click probabilities out, with its input contract checked.

:class:`ServingModel` composes what ingest did (:class:`~recsys.serving.features.RawFeatures`),
the embedding plan on inference tables (:class:`~recsys.serving.embedding.InferenceEmbedding`)
and the trained DLRM's dense layers (bottom MLP, dot interaction, top MLP; Naumov et al., 2019).
It scripts (TorchScript) and exports (``torch.export``), and the result loads with torch and
fbgemm_gpu alone.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from recsys.data.layout import DatasetMeta, vocab_path
from recsys.models.dlrm import DLRM
from recsys.serving.config import Quantize
from recsys.serving.embedding import InferenceEmbedding
from recsys.serving.features import RawFeatures


def dtype_name(dtype: torch.dtype) -> str:
    """``str(dtype)`` is a number in TorchScript; the dtypes a caller is likely to pass, by name."""
    for candidate, name in [(torch.float32, "float32"), (torch.float64, "float64"), (torch.float16, "float16"),
                            (torch.int32, "int32"), (torch.int16, "int16"), (torch.int8, "int8"),
                            (torch.uint8, "uint8"), (torch.bool, "bool"), (torch.bfloat16, "bfloat16")]:
        if dtype == candidate:
            return name
    return "another dtype"


def check_inputs(dense: torch.Tensor, sparse: torch.Tensor, num_dense: int, num_sparse: int) -> None:
    """Raise an error naming the input and what it expects unless ``dense`` is (B, num_dense)
    int64 and ``sparse`` (B, num_sparse) int64 (TorchScript-able: it runs inside ``model.ts``)."""
    expected_dense = "(B, " + str(num_dense) + ") int64"
    expected_sparse = "(B, " + str(num_sparse) + ") int64"
    if dense.dtype != torch.int64:
        raise ValueError("input 'dense': expected " + expected_dense + ", got " + dtype_name(dense.dtype))
    if dense.dim() != 2 or dense.shape[1] != num_dense:
        raise ValueError("input 'dense': expected shape " + expected_dense + ", got " + str(list(dense.shape)))
    if sparse.dtype != torch.int64:
        raise ValueError("input 'sparse': expected " + expected_sparse + ", got " + dtype_name(sparse.dtype))
    if sparse.dim() != 2 or sparse.shape[1] != num_sparse:
        raise ValueError("input 'sparse': expected shape " + expected_sparse + ", got " + str(list(sparse.shape)))
    if dense.shape[0] != sparse.shape[0]:
        raise ValueError(
            "inputs 'dense' and 'sparse' must have the same batch size B, got "
            + str(dense.shape[0]) + " and " + str(sparse.shape[0])
        )


class ServingModel(nn.Module):
    """Raw features → click probabilities.

    Forward takes ``dense`` (B, 13) int64 raw integer features I1..I13 (a negative value, e.g.
    -1, stands for missing) and ``sparse`` (B, 26) int64 raw categorical ids C1..C26 (the hex
    id as an integer, -1 for missing), and returns (B,) float32 click probabilities. A wrong
    dtype, rank, width or batch mismatch raises an error naming the input and what it expects.
    """

    def __init__(self, raw: RawFeatures, embedding: InferenceEmbedding, dlrm: DLRM, num_dense: int) -> None:
        super().__init__()
        self.raw = raw
        self.embedding = embedding
        # copies: the artifact must not change when the training model goes on training
        self.bottom = copy.deepcopy(dlrm.bottom)
        self.interaction = copy.deepcopy(dlrm.interaction)
        self.top = copy.deepcopy(dlrm.top)
        self.num_dense = num_dense
        self.num_sparse = dlrm.num_sparse
        self.dim = dlrm.dim

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        check_inputs(dense, sparse, self.num_dense, self.num_sparse)
        if not torch.jit.is_scripting():
            # torch.export traces the checks above away (dtypes and ranks are static there):
            # keep dtype assertions in the graph; the exported program guards the shapes
            # itself, naming the input for a wrong width or batch, not for a wrong rank
            torch.ops.aten._assert_tensor_metadata.default(dense, dtype=torch.int64)
            torch.ops.aten._assert_tensor_metadata.default(sparse, dtype=torch.int64)
        dense_vec = self.bottom(self.raw.dense(dense))  # (B, D)
        pooled = self.embedding(self.raw.sparse(sparse))  # (B, F * D)
        sparse_vecs = pooled.view(-1, self.num_sparse, self.dim)  # (B, F, D)
        logits = self.top(self.interaction(dense_vec, sparse_vecs)).squeeze(1)  # (B,)
        return torch.sigmoid(logits)


def read_vocabularies(data_path: str | Path, meta: DatasetMeta) -> list[np.ndarray]:
    """Each sparse feature's kept raw ids in rank order, from ``<data_path>/vocab``.

    A dataset without vocabulary files (a test fixture whose ids already are ranks) gets the
    identity: raw id r is rank r.
    """
    out = []
    for name in meta.sparse_features:
        path = vocab_path(data_path, name)
        kept = meta.num_embeddings[name] - 1
        if path.exists():
            raw = pq.read_table(path, columns=["raw"]).column("raw").to_numpy()
            if raw.size != kept:
                raise ValueError(f"{path}: {raw.size} vocabulary ids, but meta.json gives {name} {kept} kept ids + 1 OOV row")
        else:
            raw = np.arange(kept, dtype=np.int64)
        out.append(raw)
    return out


def serving_model(dlrm: DLRM, meta: DatasetMeta, data_path: str | Path, quantize: Quantize) -> ServingModel:
    """The :class:`ServingModel` of a trained DLRM, its dataset's vocabularies and transform."""
    if meta.dense_transform not in ("log1p", "none"):
        raise ValueError(f"{data_path}/meta.json: dense_transform {meta.dense_transform!r} is not log1p|none")
    raw = RawFeatures(
        read_vocabularies(data_path, meta),
        [meta.num_embeddings[name] - 1 for name in meta.sparse_features],
        log1p=meta.dense_transform == "log1p",
    )
    weights = {name: w.detach().clone() for name, w in dlrm.embedding.lookup.table_weights().items()}
    embedding = InferenceEmbedding(dlrm.embedding.plan, weights, quantize)
    return ServingModel(raw, embedding, dlrm, len(meta.dense_features)).eval()
