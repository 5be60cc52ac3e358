"""Typed configs of the model layer (light: no torch import).

:class:`DLRMConfig` is the layer sizes; :class:`ModelRecipe` is everything that rebuilds a
trained model's modules (layers, embedding plan, table optimizer, seed, the dataset whose
vocabularies sized the tables). Checkpoints carry the recipe, so evaluation and export rebuild
a model without knowing how it was trained.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.specs import TableOptimizerConfig


class DensePrecision(str, enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"  # mixed: bfloat16 matrix products under torch.autocast, fp32 weights
    auto = "auto"  # bf16 where the device computes bfloat16 natively, fp32 elsewhere


class ModelArch(str, enum.Enum):
    dlrm = "dlrm"
    fm = "fm"  # a factorization machine over the same embeddings (recsys.models.fm): a quality baseline


@dataclasses.dataclass
class DLRMConfig:
    """Layer sizes and options. ``bottom_mlp`` ends at ``embedding_dim``; ``top_mlp`` ends at 1.

    ``fm_component`` (DeepFM's: the pairwise dot products' sum added to the logit),
    ``first_order`` (a learned constant vector in the interaction: per-id first-order weights),
    ``dense_norm`` (batch-normalised dense inputs) and ``bottom_last_relu=False`` (a signed dense
    vector) give the embeddings a direct path to the logit; :mod:`recsys.models.dlrm` says why.
    The defaults are the reference DLRM's; ``conf/model/kaggle.yaml`` turns all four on.

    ``dense_precision=bf16`` computes the MLPs in bfloat16 (``torch.autocast``: mixed precision,
    as Lightning's ``bf16-mixed``), and the interaction too where ``recsys::dot_interaction`` does
    not compute it in fp32 (a CPU with recsys's kernels); their weights, the dense optimizer's
    state, the embedding tables and the loss stay fp32, and an exported model serves in fp32. Where the
    CPU has bfloat16 dot-product instructions (AVX512-BF16, AMX) or on a GPU, the matrix products
    run about twice as fast; elsewhere it is slower. ``auto`` picks bf16 on such a device and fp32
    elsewhere (the Kaggle preset's choice). :mod:`recsys.models.dlrm` gives the measured figures.

    ``arch=fm`` builds a factorization machine over the same embedding tables instead (it uses
    ``embedding_dim`` only): the baseline that ``benchmarks/bench_quality.py`` trains beside the DLRM.

    The classic Kaggle setup is dim 16, bottom 512-256-64-16, top 512-256-1; the MLPerf 1TB
    setup is dim 128, bottom 512-256-128, top 1024-1024-512-256-1.
    """

    embedding_dim: int = 16
    bottom_mlp: list[int] = dataclasses.field(default_factory=lambda: [512, 256, 64, 16])
    top_mlp: list[int] = dataclasses.field(default_factory=lambda: [512, 256, 1])
    arch: ModelArch = ModelArch.dlrm
    fm_component: bool = False
    first_order: bool = False
    dense_norm: bool = False
    bottom_last_relu: bool = True
    dense_precision: DensePrecision = DensePrecision.fp32

    def __post_init__(self) -> None:
        if not self.bottom_mlp or self.bottom_mlp[-1] != self.embedding_dim:
            raise ValueError(
                f"model.bottom_mlp must end at model.embedding_dim={self.embedding_dim}, got {list(self.bottom_mlp)}"
            )
        if not self.top_mlp or self.top_mlp[-1] != 1:
            raise ValueError(f"model.top_mlp must end at 1 (one logit), got {list(self.top_mlp)}")


@dataclasses.dataclass
class ModelRecipe:
    """What rebuilds a model's modules (see :func:`recsys.models.build.build_model`).

    Args:
        model: the DLRM's layer sizes.
        embedding: the embedding config (method, options, overrides, budget; see
            :mod:`recsys.embeddings.embedding_config`).
        table_optimizer: the fused table optimizer (its state is part of the model's weights).
        data_path: the prepared dataset whose vocabularies sized the tables (MD block popularity
            reads its counts).
        seed: initial-weight seed.
        placement: which rows of the tables live in RAM and which on disk.
    """

    model: DLRMConfig = dataclasses.field(default_factory=DLRMConfig)
    embedding: Any = dataclasses.field(default_factory=lambda: {"method": "full"})
    table_optimizer: TableOptimizerConfig = dataclasses.field(default_factory=TableOptimizerConfig)
    data_path: str = "???"
    seed: int = 0
    placement: PlacementConfig = dataclasses.field(default_factory=PlacementConfig)
