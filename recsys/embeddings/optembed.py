"""OptEmbed: learning the optimal embedding table (Lyu et al., CIKM 2022).

OptEmbed finds, for every field (logical feature), which rows of its table are worth keeping
and how wide the kept rows should be, then trains that smaller table. Three stages:

1. **Supernet training.** Each field f has a learnable threshold t_f. A row e is kept when its
   L1 norm exceeds the threshold: m(e) = S(‖e‖₁ − t_f), S the unit step. S has no useful
   gradient, so the backward uses the paper's *long-tailed* straight-through estimator
   (from Dynamic Sparse Training, Liu et al. 2020)::

       ∂S/∂x ≈ 2 − 4|x|   for |x| ≤ 0.4
               0.4        for 0.4 < |x| ≤ 1
               0          otherwise

   so rows near the threshold still receive gradient (a pruned row can come back) and the
   threshold learns from the loss. The regulariser λ·Σ_f exp(−t_f) pushes every threshold up
   (more pruning) against the loss. At the same time the supernet learns to work at every
   width: each training batch samples a dimension d_f per field uniformly from the candidates
   and zeroes dims ≥ d_f (a prefix mask, so a narrower vector is a prefix of a wider one).
   Pruned rows output zero ("zero" OOV mode of the authors' code); the row mask is taken on
   the full row (not the dim-masked one), so the kept set does not depend on the width.
2. **Evolutionary search** of the per-field dims on validation AUC using the trained supernet
   as is (weight sharing, no retraining per candidate). :func:`evolutionary_search` is the
   pure core: it takes any fitness callable.
3. **Retraining** from scratch with both masks fixed: the rows the supernet's thresholds kept
   and the searched dims. With the same seed, the fresh tables start from the supernet's
   initial weights (the paper rewinds to the saved initialisation).

After retraining, **compaction** turns the masked full tables into small physical tables:
kept rows renumbered in rank order (:class:`~recsys.embeddings.transforms.RemapRows`), every
pruned id mapped to ONE shared OOV row per field, and each table only d_f wide
(:class:`~recsys.embeddings.combiners.ZeroPad` restores the model dim). The OOV row is zero:
the retrained model gives pruned ids a zero vector, and the compacted model must predict
exactly as the retrained one. (Fine-tuning the compacted model would let that row learn one
shared vector for all pruned ids, the authors' "oov" mode.)

FBGEMM's kernels need table dims that are multiples of 4, so the dim candidates are multiples
of 4 up to the model dim (the paper searches every width 1..D).

One spec compiles to three networks (``network``): the supernet, the retrain network (full
tables, fixed masks) and the compacted network; the latter two read the stage artifacts
(kept rows, searched dims) from ``artifacts``. :mod:`recsys.train.optembed` runs the stages.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

from recsys.embeddings.combiners import ZeroPad, pool_per_id
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.specs import DimSampling, FBGEMM_DIM_MULTIPLE, OptEmbedNetwork, OptEmbedSpec
from recsys.embeddings.transforms import RemapRows

JaggedIds = Tuple[torch.Tensor, torch.Tensor]

MASKS_PT = "masks.pt"  # {feature: (num_embeddings,) bool, True = kept row}
MASKS_JSON = "masks.json"  # {feature: {rows, kept, threshold}}
DIMS_JSON = "dims.json"  # {feature: searched dim}


# ---------------------------------------------------------------------------------------------
# The math: pure functions, TorchScript-able.


def row_norms(rows: torch.Tensor) -> torch.Tensor:
    """L1 norm of each row: (N, D) → (N,)."""
    return rows.abs().sum(dim=1)


def long_tail_surrogate(x: torch.Tensor) -> torch.Tensor:
    """A function whose derivative is the long-tailed estimator of the unit step's gradient:
    2 − 4|x| on |x| ≤ 0.4, 0.4 on 0.4 < |x| ≤ 1, 0 beyond (its value does not matter)."""
    ax = x.abs()
    return torch.where(ax <= 0.4, 2 * x - 2 * x * ax, torch.where(ax <= 1.0, 0.4 * x, torch.zeros_like(x)))


def step_ste(x: torch.Tensor) -> torch.Tensor:
    """Unit step 1[x > 0] forward, long-tailed straight-through estimator backward.

    The detach trick: step(x) + s(x) − s(x).detach() has step's value exactly (s − s = 0)
    and s's gradient; it needs no custom autograd Function, so it scripts.
    """
    surrogate = long_tail_surrogate(x)
    return (x > 0).to(x.dtype) + surrogate - surrogate.detach()


def threshold_penalty(threshold: torch.Tensor, weight: float) -> torch.Tensor:
    """λ·exp(−t): rewards higher thresholds, i.e. more pruned rows."""
    return weight * torch.exp(-threshold)


def prefix_mask(dims: torch.Tensor, dim: int) -> torch.Tensor:
    """(K,) widths → (K, dim) float masks, 1 on the first d dims and 0 after."""
    return (torch.arange(dim, device=dims.device).unsqueeze(0) < dims.unsqueeze(1)).float()


# ---------------------------------------------------------------------------------------------
# Transforms and combiners (TorchScript-able forward).


class PerIdRows(nn.Module):
    """The frequency rank is the row, one bag per id, so the supernet masks each id's row."""

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        return [(values, torch.ones_like(values))]


class DropRows(nn.Module):
    """Retraining's fixed row mask: pruned ids are removed from their bags, so they add
    nothing to the pooled vector (a bag of only pruned ids pools to zero).

    Args:
        keep: (num_embeddings,) bool, True for the rows the supernet kept.
    """

    def __init__(self, keep: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("keep", keep.to(torch.bool))

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> List[JaggedIds]:
        batch = lengths.numel()
        kept = self.keep[values]  # (N,)
        bag = torch.repeat_interleave(torch.arange(batch, device=values.device), lengths.long(), output_size=values.numel())
        new_lengths = torch.bincount(bag[kept], minlength=batch).to(lengths.dtype)  # (B,)
        return [(values[kept], new_lengths)]


class SupernetMask(nn.Module):
    """The supernet combiner: learned row mask per id, then pooling, then a width mask.

    Slot 0 is per id: (N, D) rows. Each row is kept iff ‖e‖₁ > t (step with the long-tailed
    STE); kept rows are pooled per bag; dims ≥ d are zeroed, with d sampled uniformly from
    ``candidates`` in training and ``eval_dim`` in eval mode (the search sets it).

    Args:
        dim: the model dim D (the table's width).
        candidates: widths to sample, multiples of 4, at most D.
        threshold_init: initial t.
        reg_weight: λ of :meth:`regularization`.
        per_example: sample one width per bag instead of one per batch.
    """

    def __init__(self, dim: int, candidates: List[int], threshold_init: float, reg_weight: float, per_example: bool) -> None:
        super().__init__()
        self.dim = dim
        self.threshold = nn.Parameter(torch.tensor(float(threshold_init)))
        self.register_buffer("candidates", torch.tensor(candidates, dtype=torch.int64), persistent=False)
        self.reg_weight = reg_weight
        self.per_example = per_example
        self.eval_dim = dim

    def row_mask(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, D) rows → (N,) 1 for kept rows, 0 for pruned (STE gradient)."""
        return step_ste(row_norms(rows) - self.threshold)

    def sample_dims(self, batch: int, device: torch.device) -> torch.Tensor:
        """(1,) or (B,) widths drawn uniformly from the candidates."""
        count = batch if self.per_example else 1
        index = torch.randint(0, self.candidates.numel(), [count], device=device)
        return self.candidates[index]

    def regularization(self) -> torch.Tensor:
        return threshold_penalty(self.threshold, self.reg_weight)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows = x  # (N, D): one row per id
        pooled = pool_per_id(rows * self.row_mask(rows).unsqueeze(1), lengths)  # (B, D)
        if self.training:
            dims = self.sample_dims(lengths.numel(), rows.device)
        else:
            dims = torch.full([1], self.eval_dim, dtype=torch.int64, device=rows.device)
        return pooled * prefix_mask(dims, self.dim).to(pooled.dtype)  # (B, D)


class TruncatePad(nn.Module):
    """Retraining's fixed width mask: keep the first ``kept_dim`` dims, zeros after."""

    def __init__(self, kept_dim: int, dim: int) -> None:
        super().__init__()
        self.kept_dim = kept_dim
        self.dim = dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = x[:, : self.kept_dim]  # (B, d_f)
        return torch.nn.functional.pad(x, (0, self.dim - self.kept_dim))  # (B, D)


# ---------------------------------------------------------------------------------------------
# Stage artifacts.


def save_masks(directory: str | Path, kept: dict[str, torch.Tensor], thresholds: dict[str, float]) -> None:
    """Write the kept-row sets (tensor file) and their summary (JSON)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({name: mask.to(torch.bool).cpu() for name, mask in kept.items()}, directory / MASKS_PT)
    summary = {
        name: {"rows": int(mask.numel()), "kept": int(mask.sum()), "threshold": float(thresholds[name])}
        for name, mask in kept.items()
    }
    (directory / MASKS_JSON).write_text(json.dumps(summary, indent=2) + "\n")


def _read(directory: str | Path, name: str, produced_by: str) -> Path:
    path = Path(directory) / name
    if not path.exists():
        raise FileNotFoundError(f"OptEmbed artifacts: no {path} (it is written by embedding.stage={produced_by})")
    return path


def load_kept(directory: str | Path) -> dict[str, torch.Tensor]:
    """Kept-row masks by feature: (num_embeddings,) bool."""
    return torch.load(_read(directory, MASKS_PT, "supernet"), weights_only=True)


def load_mask_summary(directory: str | Path) -> dict[str, dict]:
    return json.loads(_read(directory, MASKS_JSON, "supernet").read_text())


def save_dims(directory: str | Path, dims: dict[str, int]) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / DIMS_JSON).write_text(json.dumps({k: int(v) for k, v in dims.items()}, indent=2) + "\n")


def load_dims(directory: str | Path) -> dict[str, int]:
    return json.loads(_read(directory, DIMS_JSON, "search").read_text())


def _feature_entry(table: dict, info: FeatureInfo, what: str, directory: str):
    if info.name not in table:
        raise KeyError(f"OptEmbed artifacts in {directory} have no {what} for feature {info.name}")
    return table[info.name]


# ---------------------------------------------------------------------------------------------
# Sizing and compilation.


def kept_rows(weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """The supernet's final row mask of one table: (rows, D) → (rows,) bool, ‖e‖₁ > t."""
    return row_norms(weights) - threshold > 0


def compact_remap(keep: torch.Tensor) -> torch.Tensor:
    """(n,) bool → (n,) int64 row of each id in the compact table: kept ids renumbered in rank
    order 0..k−1, every pruned id → k, the shared OOV row."""
    keep = keep.to(torch.bool)
    rank = torch.cumsum(keep.to(torch.int64), 0) - 1
    return torch.where(keep, rank, torch.full_like(rank, int(keep.sum())))


def compact_weights(weights: torch.Tensor, keep: torch.Tensor, kept_dim: int) -> torch.Tensor:
    """Retrained (n, D) table → compact (k + 1, d_f): kept rows, first d_f dims, zero OOV row."""
    rows = weights[keep.to(torch.bool), :kept_dim]
    return torch.cat([rows, rows.new_zeros(1, kept_dim)])


@torch.no_grad()
def copy_compacted(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], kept: dict[str, torch.Tensor], dims: dict[str, int]
) -> None:
    """Fill a compact network's tables (``target``, by name) from a retrained network's."""
    for name, weights in target.items():
        weights.copy_(compact_weights(source[name], kept[name], dims[name]))


def compact_rows(kept: int) -> int:
    """Rows of a compact table: the kept rows and the shared OOV row."""
    return kept + 1


def _stage_inputs(items: list[tuple[FeatureInfo, OptEmbedSpec]], with_masks: bool) -> Callable[[FeatureInfo, OptEmbedSpec], tuple]:
    """(kept count or mask, dim) per feature, each artifacts directory read once."""
    loaded: dict[str, tuple] = {}

    def inputs(info: FeatureInfo, spec: OptEmbedSpec) -> tuple:
        directory = str(spec.artifacts)
        if directory not in loaded:
            masks = load_kept(directory) if with_masks else load_mask_summary(directory)
            loaded[directory] = (masks, load_dims(directory))
        masks, dims = loaded[directory]
        mask = _feature_entry(masks, info, "kept rows", directory)
        rows = mask.numel() if with_masks else mask["rows"]
        if rows != info.num_embeddings:
            raise ValueError(
                f"OptEmbed artifacts in {directory}: feature {info.name} has {rows} rows, the dataset {info.num_embeddings}"
            )
        return (mask if with_masks else mask["kept"]), int(_feature_entry(dims, info, "searched dim", directory))

    return inputs


def _compile_supernet(info: FeatureInfo, spec: OptEmbedSpec, dim: int, builder: PlanBuilder) -> FeaturePlan:
    candidates = spec.candidates(dim)
    slot = builder.slot(builder.table(info.name, info.num_embeddings, dim), per_id=True)
    combiner = SupernetMask(dim, candidates, spec.threshold_init, spec.reg_weight, spec.dim_sampling is DimSampling.example)
    description = f"supernet {info.num_embeddings} x {dim}, threshold {spec.threshold_init}, dims {candidates}"
    return FeaturePlan(info.name, "optembed", [slot], PerIdRows(), combiner, description)


def _compile_masked(info: FeatureInfo, spec: OptEmbedSpec, dim: int, builder: PlanBuilder, keep: torch.Tensor, kept_dim: int) -> FeaturePlan:
    _check_dim(info, kept_dim, dim)
    kept = int(keep.sum())
    if spec.network is OptEmbedNetwork.retrain:
        slot = builder.slot(builder.table(info.name, info.num_embeddings, dim))
        description = f"retrain {info.num_embeddings} x {dim}, {kept} rows kept, dims < {kept_dim}"
        return FeaturePlan(info.name, "optembed", [slot], DropRows(keep), TruncatePad(kept_dim, dim), description)
    slot = builder.slot(builder.table(info.name, compact_rows(kept), kept_dim))
    description = f"compact {kept} of {info.num_embeddings} rows + 1 OOV x {kept_dim} (zero-padded to {dim})"
    return FeaturePlan(info.name, "optembed", [slot], RemapRows(compact_remap(keep)), ZeroPad(dim), description)


def _check_dim(info: FeatureInfo, kept_dim: int, dim: int) -> None:
    if not 0 < kept_dim <= dim or kept_dim % FBGEMM_DIM_MULTIPLE:
        raise ValueError(f"OptEmbed searched dim {kept_dim} of {info.name} is not a multiple of 4 in (0, {dim}]")


def compile_features(items: list[tuple[FeatureInfo, OptEmbedSpec]], dim: int, builder: PlanBuilder) -> None:
    inputs = _stage_inputs(items, with_masks=True)
    for info, spec in items:
        if spec.network is OptEmbedNetwork.supernet:
            builder.feature(_compile_supernet(info, spec, dim, builder))
        else:
            builder.feature(_compile_masked(info, spec, dim, builder, *inputs(info, spec)))


# ---------------------------------------------------------------------------------------------
# Evolutionary search (pure: any fitness callable).


Candidate = Tuple[int, ...]


@dataclasses.dataclass
class SearchResult:
    """The best candidate found, its fitness, and per generation: the population's fitness."""

    best: Candidate
    fitness: float
    history: list[dict]
    evaluated: int


def _random_candidates(rng: np.random.Generator, choices: np.ndarray, fields: int, count: int) -> list[Candidate]:
    return [tuple(int(c) for c in rng.choice(choices, size=fields)) for _ in range(count)]


def _child(rng: np.random.Generator, parents: list[Candidate], choices: np.ndarray, mutation_prob: float, crossover_prob: float) -> Candidate:
    """A parent, uniformly crossed with a second one with ``crossover_prob``, then each field
    redrawn from the choices with ``mutation_prob``."""
    child = np.array(parents[rng.integers(len(parents))])
    if rng.random() < crossover_prob:
        other = np.array(parents[rng.integers(len(parents))])
        child = np.where(rng.random(child.size) < 0.5, child, other)
    mutate = rng.random(child.size) < mutation_prob
    child[mutate] = rng.choice(choices, size=int(mutate.sum()))
    return tuple(int(c) for c in child)


def _offspring(
    rng: np.random.Generator, parents: list[Candidate], choices: np.ndarray, count: int, seen: set, mutation_prob: float, crossover_prob: float
) -> list[Candidate]:
    """``count`` children, new ones preferred (a few redraws before a repeat is accepted)."""
    children: list[Candidate] = []
    for _ in range(count):
        for _ in range(20):
            child = _child(rng, parents, choices, mutation_prob, crossover_prob)
            if child not in seen:
                break
        seen.add(child)
        children.append(child)
    return children


def evolutionary_search(
    fitness: Callable[[Candidate], float],
    fields: int,
    choices: Sequence[int],
    *,
    population: int,
    iterations: int,
    parents: int,
    mutation_prob: float,
    crossover_prob: float,
    seed: int,
) -> SearchResult:
    """Maximise ``fitness`` over per-field choices (OptEmbed's search over per-field dims).

    Generation 0 is ``population`` random candidates. Each generation is scored (each distinct
    candidate once: a cache), the best ``parents`` candidates seen so far survive (elitism),
    and the rest of the next population are children: crossover of two parents with
    ``crossover_prob`` (uniform, per field), then per-field mutation with ``mutation_prob``.
    ``iterations`` generations are scored in all.
    """
    rng = np.random.default_rng(seed)
    options = np.asarray(sorted(set(int(c) for c in choices)))
    scores: dict[Candidate, float] = {}

    def score(candidate: Candidate) -> float:
        if candidate not in scores:
            scores[candidate] = float(fitness(candidate))
        return scores[candidate]

    pool = _random_candidates(rng, options, fields, population)
    history: list[dict] = []
    for generation in range(iterations):
        values = [score(c) for c in pool]
        elite = sorted(scores, key=scores.__getitem__, reverse=True)[:parents]
        history.append(
            {
                "generation": generation,
                "best": list(elite[0]),
                "best_fitness": scores[elite[0]],
                "population_best": max(values),
                "population_mean": float(np.mean(values)),
                "evaluated": len(scores),
            }
        )
        pool = elite + _offspring(rng, elite, options, population - len(elite), set(scores), mutation_prob, crossover_prob)
    best = max(scores, key=scores.__getitem__)
    return SearchResult(best, scores[best], history, len(scores))
