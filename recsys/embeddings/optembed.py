"""OptEmbed: learning the optimal embedding table (Lyu et al., CIKM 2022).

OptEmbed finds, for every field (logical feature), which rows of its table are worth keeping
and how wide the kept rows should be, then trains that smaller table. Three stages:

1. **Supernet training.** Each field f has a learnable threshold t_f; a row e is kept when
   ‖e‖₁ > t_f, a unit step trained through the paper's long-tailed straight-through estimator
   (:mod:`recsys.embeddings.optembed_masks`). The regulariser λ·Σ_f exp(−t_f) pushes every
   threshold up (more pruning) against the loss. At the same time the supernet learns to work
   at every width: each training batch samples a dimension d_f per field uniformly from the
   candidates and zeroes dims ≥ d_f (a prefix mask, so a narrower vector is a prefix of a
   wider one). Pruned rows output zero ("zero" OOV mode of the authors' code).
2. **Evolutionary search** of the per-field dims on validation AUC using the trained supernet
   as is (weight sharing, no retraining per candidate):
   :func:`recsys.embeddings.evolutionary_search.evolutionary_search`.
3. **Retraining** from scratch with both masks fixed: the rows the supernet's thresholds kept
   and the searched dims. With the same seed, the fresh tables start from the supernet's
   initial weights (the paper rewinds to the saved initialisation).

After retraining, **compaction** (:mod:`recsys.embeddings.optembed_compaction`) turns the
masked full tables into small physical tables that predict exactly as the retrained model.

FBGEMM's kernels need table dims that are multiples of 4, so the dim candidates are multiples
of 4 up to the model dim (the paper searches every width 1..D).

One spec compiles to three networks (``network``), here: the supernet, the retrain network
(full tables, fixed masks) and the compacted network; the latter two read the stage artifacts
(:mod:`recsys.embeddings.optembed_artifacts`) from ``artifacts``.
:mod:`recsys.train.optembed` runs the stages.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recsys.embeddings.combiners import ZeroPad
from recsys.embeddings.optembed_artifacts import load_dims, load_kept
from recsys.embeddings.optembed_compaction import compact_remap, compact_rows
from recsys.embeddings.optembed_modules import DropRows, SupernetMask, TruncatePad
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.specs import DimSampling, FBGEMM_DIM_MULTIPLE, OptEmbedNetwork, OptEmbedSpec
from recsys.embeddings.transforms import Identity, RemapRows


def _feature_entry(table: dict, info: FeatureInfo, what: str, directory: str):
    if info.name not in table:
        raise KeyError(f"OptEmbed artifacts in {directory} have no {what} for feature {info.name}")
    return table[info.name]


def _stage_inputs() -> Callable[[FeatureInfo, OptEmbedSpec], tuple[torch.Tensor, int]]:
    """(kept-row mask, searched dim) per feature, each artifacts directory read once."""
    loaded: dict[str, tuple] = {}

    def inputs(info: FeatureInfo, spec: OptEmbedSpec) -> tuple[torch.Tensor, int]:
        directory = str(spec.artifacts)
        if directory not in loaded:
            loaded[directory] = (load_kept(directory), load_dims(directory))
        masks, dims = loaded[directory]
        mask = _feature_entry(masks, info, "kept rows", directory)
        if mask.numel() != info.num_embeddings:
            raise ValueError(
                f"OptEmbed artifacts in {directory}: feature {info.name} has {mask.numel()} rows, "
                f"the dataset {info.num_embeddings}"
            )
        return mask, int(_feature_entry(dims, info, "searched dim", directory))

    return inputs


def _compile_supernet(info: FeatureInfo, spec: OptEmbedSpec, dim: int, builder: PlanBuilder) -> FeaturePlan:
    candidates = spec.candidates(dim)
    slot = builder.slot(builder.table(info.name, info.num_embeddings, dim))
    combiner = SupernetMask(dim, candidates, spec.threshold_init, spec.reg_weight, spec.dim_sampling is DimSampling.example,
                            spec.threshold_lr)
    description = f"supernet {info.num_embeddings} x {dim}, threshold {spec.threshold_init}, dims {candidates}"
    return FeaturePlan(info.name, "optembed", [slot], Identity(per_id=True), combiner, description)


def _compile_masked(info: FeatureInfo, spec: OptEmbedSpec, dim: int, builder: PlanBuilder, keep: torch.Tensor, kept_dim: int) -> FeaturePlan:
    if not 0 < kept_dim <= dim or kept_dim % FBGEMM_DIM_MULTIPLE:
        raise ValueError(f"OptEmbed searched dim {kept_dim} of {info.name} is not a multiple of 4 in (0, {dim}]")
    kept = int(keep.sum())
    if spec.network is OptEmbedNetwork.retrain:
        slot = builder.slot(builder.table(info.name, info.num_embeddings, dim))
        description = f"retrain {info.num_embeddings} x {dim}, {kept} rows kept, dims < {kept_dim}"
        return FeaturePlan(info.name, "optembed", [slot], DropRows(keep), TruncatePad(kept_dim, dim), description)
    slot = builder.slot(builder.table(info.name, compact_rows(kept), kept_dim))
    description = f"compact {kept} of {info.num_embeddings} rows + 1 OOV x {kept_dim} (zero-padded to {dim})"
    return FeaturePlan(info.name, "optembed", [slot], RemapRows(compact_remap(keep)), ZeroPad(dim), description)


def compile_features(items: list[tuple[FeatureInfo, OptEmbedSpec]], dim: int, builder: PlanBuilder) -> None:
    inputs = _stage_inputs()
    for info, spec in items:
        if spec.network is OptEmbedNetwork.supernet:
            builder.feature(_compile_supernet(info, spec, dim, builder))
        else:
            builder.feature(_compile_masked(info, spec, dim, builder, *inputs(info, spec)))
