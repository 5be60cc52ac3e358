"""The model every pipeline measurement trains: the Kaggle DLRM over full tables, built the way
``recsys-train`` builds it (recsys) or from torchrec's own modules (the peer), and its batches."""

from __future__ import annotations

from pathlib import Path

import torch

BATCH_SIZE = 2048
EMBEDDING_DIM = 16
BOTTOM_MLP = [512, 256, 64, 16]
TOP_MLP = [512, 256, 1]
TABLE_LR = 0.05
DENSE_LR = 0.01
MODELS = ("recsys", "torchrec")


def materialise_batches(root: Path, count: int) -> tuple[list, dict[str, int]]:
    """``count`` training batches in memory (cycling the split if it is short), and table sizes
    (rows per sparse feature, in feature order)."""
    from recsys.data.loader import ParquetBatches

    source = ParquetBatches(root, "train", BATCH_SIZE, shuffle=True, prefetch=0, drop_last=True)
    batches = []
    while len(batches) < count:
        source.set_epoch(source.epoch + 1)
        batches.extend(source)
    for b in batches[:count]:
        b.sparse.offsets()  # computed once here, as a loader thread would, not in the timed step
    return batches[:count], {f: source.meta.num_embeddings[f] for f in source.meta.sparse_features}


def build_recsys(root: Path, num_embeddings: dict[str, int], precision: str):
    """recsys's DLRM as ``recsys-train`` builds it (full tables, fused FBGEMM lookup; dense layers
    at ``model.dense_precision=precision``); returns (model, dense optimizer)."""
    from recsys.data.layout import DatasetMeta
    from recsys.embeddings.specs import TableOptimizer, TableOptimizerConfig
    from recsys.models.build import build_model
    from recsys.models.config import DLRMConfig
    from recsys.train.config import DenseOptimizer, TrainJobConfig
    from recsys.train.loop import make_dense_optimizer

    cfg = TrainJobConfig()
    cfg.data.path = str(root)
    cfg.model = DLRMConfig(EMBEDDING_DIM, list(BOTTOM_MLP), list(TOP_MLP), dense_precision=precision)
    cfg.trainer.table_optimizer = TableOptimizerConfig(kind=TableOptimizer.rowwise_adagrad, lr=TABLE_LR)
    meta = DatasetMeta.load(root)
    if dict(meta.num_embeddings) != num_embeddings:
        raise ValueError("table sizes differ from the dataset's")
    model = build_model(cfg.recipe(), meta)
    return model, make_dense_optimizer(model, DenseOptimizer.adagrad, DENSE_LR)


def build_torchrec(root: Path, num_embeddings: dict[str, int], precision: str):
    """torchrec's DLRM over a FusedEmbeddingBagCollection, its forward under bfloat16 autocast
    where ``precision`` puts recsys's dense layers in bf16; returns (model, dense optimizer)."""
    from recsys.models.dlrm import computes_bf16
    from torchrec.models.dlrm import DLRM
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
    from torchrec.optim import RowWiseAdagrad

    tables = [EmbeddingBagConfig(name=f"t_{f}", embedding_dim=EMBEDDING_DIM, num_embeddings=n, feature_names=[f])
              for f, n in num_embeddings.items()]
    ebc = FusedEmbeddingBagCollection(tables=tables, optimizer_type=RowWiseAdagrad,
                                      optimizer_kwargs={"lr": TABLE_LR, "eps": 1e-8}, device=torch.device("cpu"))
    model = DLRM(embedding_bag_collection=ebc, dense_in_features=13, dense_arch_layer_sizes=list(BOTTOM_MLP),
                 over_arch_layer_sizes=list(TOP_MLP))
    table_params = {id(p) for p in ebc.parameters()}
    dense = [p for p in model.parameters() if id(p) not in table_params]
    optimizer = torch.optim.Adagrad(dense, lr=DENSE_LR)
    if computes_bf16(precision, "cpu"):
        model = BFloat16Forward(model)
    return model, optimizer


class BFloat16Forward(torch.nn.Module):
    """A model's forward under CPU bfloat16 autocast, with fp32 logits (what
    ``model.dense_precision=bf16`` does inside recsys's DLRM)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, dense: torch.Tensor, sparse) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner(dense, sparse).float()


BUILDERS = {"recsys": build_recsys, "torchrec": build_torchrec}
