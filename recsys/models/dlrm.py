"""DLRM (Naumov et al., 2019): bottom MLP over dense features, pairwise dot interaction
between the dense vector and every sparse feature's embedding, top MLP to one logit.

The model is built by composition, like torchrec's ``models/dlrm.py``: it takes an embedding
module (anything mapping a KeyedJaggedTensor to a KeyedTensor of ``embedding_dim``-wide
vectors) and owns no loss, optimizer or device logic.

Four options of :class:`~recsys.models.config.DLRMConfig` (all off in the reference DLRM, all on
in ``conf/model/kaggle.yaml``) give the embeddings a direct path to the logit. In the reference
DLRM every path from an embedding to the logit runs through the top MLP, whose initial weights
are small and of random sign: at initialisation an embedding's gradient is hundreds of times
smaller than with the options (``tests/models/test_dlrm.py``), and it mixes the partners' vectors
with random signs where a factorization machine's sums them. On planted-FM data
(``benchmarks/results/sweep_training.json``, 1M rows, one epoch) the reference DLRM stays ~0.03 AUC
below an FM over the same tables; the FM component closes most of that, and shrinking the table
optimizer's eps 100x (which would undo a mere gradient-size effect on the rows) does not.
The options:

- ``fm_component``: DeepFM's FM component (Guo et al., IJCAI 2017): the sum of the interaction's
  pairwise dot products is added to the top MLP's logit, so every pair enters with weight 1
  from the first step, and the top MLP learns what the sum misses;
- ``first_order``: a learned constant vector joins the interaction, whose dot product with each
  embedding is that id's first-order weight (the FM's linear term; see :mod:`recsys.models.fm`);
- ``dense_norm``: batch normalisation (Ioffe and Szegedy, 2015) of the dense inputs, as the FM's
  (neutral on the planted data, within seed noise; it spares the bottom MLP the inputs' scale);
- ``bottom_last_relu=false``: no ReLU after the bottom MLP's last layer, so the dense vector's
  dot products with the embeddings can take either sign (the dense-by-sparse terms of an FM).

``dense_precision`` (mixed precision): with ``bf16`` the bottom MLP and the top MLP run under
``torch.autocast`` in bfloat16; the FM component's sum and the logit are fp32, and so is the
interaction where ``recsys::dot_interaction`` computes it (a CPU with recsys's kernels built;
elsewhere its torch form runs under the autocast, in bf16, the embedding rows cast). On this
project's 2-core AMD EPYC (AVX512-BF16, no AMX), before the op, one epoch of the Kaggle DLRM
over the 4M-row planted set trained at 62.1K samples/s against fp32's 38.2K, to test AUC
0.80077 against 0.80069 (Bayes-optimal 0.80923; one run each, ``recsys-train
data.path=<bench_pareto's 4M set> trainer=kaggle model.dense_precision=bf16|fp32``). With
oneDNN kept from the BF16 instructions (``ONEDNN_MAX_CPU_ISA=AVX512_CORE``) the dense layers'
step took twice fp32's time: hence ``auto``, and a warning for ``bf16`` on such a CPU.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.embeddings.kernels import kernels_unavailable, recsys_kernels
from recsys.models.config import DensePrecision, DLRMConfig

log = logging.getLogger(__name__)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 products natively: a GPU that supports it, or a CPU
    with AVX512-BF16 or AMX (elsewhere oneDNN converts and the products run slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def computes_bf16(precision: DensePrecision | str, device: torch.device | str) -> bool:
    """Whether ``model.dense_precision`` puts the dense layers in bfloat16 on ``device``."""
    precision, device = DensePrecision(precision), torch.device(device)
    if precision is DensePrecision.auto:
        return native_bf16(device)
    if precision is DensePrecision.bf16 and not native_bf16(device):
        log.warning("model.dense_precision=bf16: this %s has no native bfloat16 arithmetic, so the dense layers "
                    "run slower than in fp32 (use model.dense_precision=auto or fp32)", device.type)
    return precision is DensePrecision.bf16


def mlp(in_features: int, sizes: list[int], last_activation: bool) -> nn.Sequential:
    """Linear+ReLU stack; the final ReLU is optional (none before a logit)."""
    layers: list[nn.Module] = []
    for i, out_features in enumerate(sizes):
        layers.append(nn.Linear(in_features, out_features))
        if i < len(sizes) - 1 or last_activation:
            layers.append(nn.ReLU())
        in_features = out_features
    return nn.Sequential(*layers)


class DotInteraction(nn.Module):
    """Pairwise dot products of the dense vector, F sparse vectors and, with ``constant_dim``, a
    learned constant vector (upper triangle), after the dense vector itself.

    Output width: D + V(V-1)/2 with V = num_vectors (+1 with the constant vector).

    Args:
        num_vectors: dense + sparse vectors (F+1).
        constant_dim: 0, or D to add the constant vector (``DLRMConfig.first_order``).
    """

    def __init__(self, num_vectors: int, constant_dim: int = 0) -> None:
        super().__init__()
        if constant_dim:
            num_vectors += 1
            # unit length, like the FM's: the ids' first-order weights move as fast as their factors
            self.constant = nn.Parameter(torch.randn(1, 1, constant_dim) / constant_dim**0.5)  # (1, 1, D)
        else:
            self.register_parameter("constant", None)
        rows, cols = torch.triu_indices(num_vectors, num_vectors, offset=1)
        self.register_buffer("pair_index", rows * num_vectors + cols, persistent=False)
        self.num_vectors = num_vectors
        self.fusable = not kernels_unavailable() and num_vectors <= recsys_kernels.MAX_VECTORS

    def output_dim(self, dim: int) -> int:
        return dim + self.pair_index.numel()

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        # dense: (B, D); sparse: (B, F, D)
        vectors = [dense.unsqueeze(1), sparse]
        constant = self.constant
        if constant is not None:
            vectors.append(constant.expand(sparse.shape[0], 1, sparse.shape[2]))
        stacked = torch.cat(vectors, dim=1)  # (B, V, D)
        gram = torch.bmm(stacked, stacked.transpose(1, 2))  # (B, V, V)
        pairs = gram.flatten(1).index_select(1, self.pair_index)  # (B, V(V-1)/2)
        return torch.cat([dense, pairs], dim=1)

    def fused(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """What :meth:`forward` computes, as one ``recsys::dot_interaction`` call (``kernels/``)
        in float32 where the op runs (a CPU with the C++ build, at most its 64 vectors; else
        :meth:`forward`). Training calls this; ``forward`` stays plain torch, so a scripted or
        exported serving model needs no recsys op to load."""
        if not (self.fusable and dense.device.type == "cpu"):
            return self(dense, sparse)
        constant = None if self.constant is None else self.constant.view(-1)
        return recsys_kernels.dot_interaction(dense.float(), sparse.float(), constant)


class OverArch(nn.Sequential):
    """The top MLP (interaction output to one logit) and, with ``fm_component``, DeepFM's FM
    component: the sum of the interaction's pairwise dot products, added to the MLP's logit.

    A :class:`torch.nn.Sequential` of the MLP's layers (state-dict keys as a plain top MLP's).

    Args:
        in_features: the interaction's width; its first ``dense_width`` columns are the dense
            vector, the rest the pairwise dot products.
        sizes: layer widths, ending at 1.
        dense_width: D.
        fm_component: add the pairwise sum to the logit.
    """

    def __init__(self, in_features: int, sizes: list[int], dense_width: int, fm_component: bool) -> None:
        super().__init__(*mlp(in_features, sizes, last_activation=False))
        self.dense_width = dense_width
        self.fm_component = fm_component

    def forward(self, interaction: torch.Tensor) -> torch.Tensor:
        """(B, 1) logits for the interaction output (B, in_features)."""
        out = interaction
        for layer in self:
            out = layer(out)
        if self.fm_component:  # summed in fp32 under bf16 autocast too: hundreds of terms
            out = out.float() + interaction[:, self.dense_width :].float().sum(1, keepdim=True)  # (B, 1)
        return out


class DLRM(nn.Module):
    """DLRM over any embedding module.

    Args:
        embedding: module mapping a KeyedJaggedTensor to a KeyedTensor; must expose
            ``features`` (logical feature names) and ``output_dims`` (all equal to the dim).
        num_dense: dense features (13 for Criteo).
        config: layer sizes and the options of this module's docstring.
        device: where the model computes (``dense_precision=auto`` asks what it supports).
    """

    def __init__(self, embedding: nn.Module, num_dense: int, config: DLRMConfig, device: torch.device | str = "cpu") -> None:
        super().__init__()
        dims = set(embedding.output_dims)
        if dims != {config.embedding_dim}:
            raise ValueError(f"embedding outputs dims {sorted(dims)}, DLRM expects {config.embedding_dim}")
        self.embedding = embedding
        self.num_sparse = len(embedding.features)
        self.dim = config.embedding_dim
        self.bottom = mlp(num_dense, list(config.bottom_mlp), last_activation=config.bottom_last_relu)
        if config.dense_norm:
            self.bottom.insert(0, nn.BatchNorm1d(num_dense))  # in the bottom MLP: serving copies it along
        self.interaction = DotInteraction(self.num_sparse + 1, self.dim if config.first_order else 0)
        self.top = OverArch(self.interaction.output_dim(self.dim), list(config.top_mlp), self.dim, config.fm_component)
        self.bf16 = computes_bf16(config.dense_precision, device)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """Logits (B,) for dense (B, num_dense) and the sparse features."""
        pooled = self.embedding(sparse).values()  # (B, F * D), fp32 rows
        sparse_vecs = pooled.view(-1, self.num_sparse, self.dim)  # (B, F, D)
        with torch.autocast(dense.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            dense_vec = self.bottom(dense)  # (B, D)
            logits = self.top(self.interaction.fused(dense_vec, sparse_vecs)).squeeze(1)  # (B,)
        return logits.float()
