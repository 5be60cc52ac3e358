"""Mixed-dimension embeddings (Ginart et al., ISIT 2021).

Popular ids get wide vectors, rare ids narrow ones: a block of ids with popularity p gets
dimension d = λ·p^α, with α ≥ 0 the temperature, and λ set so the most popular block gets
``base_dim``. α = 0 puts every block at the base dimension; the paper uses α in [0, 1], where
α = 1 makes a block's dimension proportional to its popularity; α > 1 makes dimensions fall
faster than popularity, which the budget solver uses (it searches α in [0, 8]) to reach the
smallest budgets, where most blocks round to no table at all.
Each block's vectors are projected to the model's common dimension by a learned
(d_block × dim) matrix, and the projected vectors summed.

Two variants:
- ``per_table`` (the DLRM reference code's ``md_solver``): one block per table, popularity
  1/n (every row of a small table is seen more often), so d_t = base_dim·(n_min / n_t)^α, with
  n_min the smallest ``per_table`` table of the model and each feature's own α and base_dim
  (per-feature overrides apply).
- ``blocks`` (the paper's frequency-sorted blocks): ids are frequency ranks, so a table splits
  into ``num_blocks`` contiguous rank ranges with geometric boundaries; a block's popularity is
  the mean training count of its ids (from the vocabulary; without counts, the Zipf density
  1/(rank+1) is assumed).

Dimensions are rounded to FBGEMM's multiple of 4 with a threshold t (``rounding``): a block
of fractional dim d gets 4·floor(d/4 + t), so t = 0.5 is nearest rounding. A block that rounds
to 0 gets no table and its ids contribute a zero vector, the limit of the α rule, which is what
lets a 16-wide model reach 1/16 of its table bytes. The DLRM reference's ``md_solver`` has two
knobs, the scale (``d0``, here ``base_dim``) and α; here a budget solves α and t. Why two: with
row-wise Adagrad a dim-4 row costs 20 of a dim-16 row's 68 bytes, and the big tables' tail
blocks, which hold most rows and have nearly the same popularity, cross from 4 to 0 within a
few thousandths of α, so one knob jumps from about 0.29 of the full bytes to about 0.06; t then
sets how wide the blocks that stay are, so a budget between the two is used.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from recsys.embeddings.combiners import ProjectedSum
from recsys.embeddings.plan import FeatureInfo, FeaturePlan, PlanBuilder
from recsys.embeddings.specs import FBGEMM_DIM_MULTIPLE, MDSpec, MDVariant
from recsys.embeddings.transforms import FrequencyBlocks


def alpha_power_rule(popularity: np.ndarray, alpha: float, base_dim: int, top: float | None = None) -> np.ndarray:
    """d = λ·p^α with λ chosen so popularity ``top`` (default: the largest given) gets
    ``base_dim`` (unrounded)."""
    popularity = np.asarray(popularity, dtype=np.float64)
    return base_dim * (popularity / (popularity.max() if top is None else top)) ** alpha


def round_dims(dims: np.ndarray, base_dim: int, rounding: float = 0.5) -> np.ndarray:
    """4·floor(d/4 + ``rounding``) (FBGEMM's multiple of 4), at most ``base_dim``; 0 means no
    table. ``rounding`` 0.5 is nearest rounding (below 2 becomes 0)."""
    q = FBGEMM_DIM_MULTIPLE
    return np.minimum(base_dim, np.floor(np.asarray(dims) / q + rounding).astype(np.int64) * q)


def block_boundaries(n: int, num_blocks: int) -> list[int]:
    """Geometric rank boundaries [0, n^(1/K), n^(2/K), ..., n], deduplicated."""
    edges = [0] + [min(n, math.ceil(n ** (i / num_blocks))) for i in range(1, num_blocks)] + [n]
    return sorted(set(edges))


def block_popularity(info: FeatureInfo, boundaries: list[int]) -> np.ndarray:
    """Mean training count per id of each block (Zipf density when counts are unknown)."""
    starts, ends = np.array(boundaries[:-1]), np.array(boundaries[1:])
    if info.counts is not None:
        mass = (info.cumulative_counts[ends] - info.cumulative_counts[starts]).astype(np.float64)
    else:
        harmonic = lambda k: np.log(k + 0.5) + 0.5772156649  # noqa: E731  H_k ≈ ln(k+½) + γ
        mass = harmonic(ends) - np.where(starts > 0, harmonic(starts), 0.0)
    # a block nobody saw still gets a tiny positive popularity, so the rule stays defined
    return np.maximum(mass / (ends - starts), 1e-12)


@dataclasses.dataclass(frozen=True)
class FeatureBlocks:
    boundaries: list[int]
    dims: list[int]


def feature_blocks(items: list[tuple[FeatureInfo, MDSpec]], dim: int) -> list[FeatureBlocks]:
    """Block boundaries and (rounded) dimensions of every feature, by the spec's variant."""
    out: list[FeatureBlocks] = []
    # per_table: the smallest table of the model is the most popular block, for every feature
    n_min = min((info.num_embeddings for info, spec in items if spec.variant == MDVariant.per_table), default=None)
    for info, spec in items:
        base = spec.base_dim or dim
        if base > dim or base % FBGEMM_DIM_MULTIPLE:
            raise ValueError(f"embedding.base_dim={base} ({info.name}) must be a multiple of 4 and at most the model dim {dim}")
        if spec.variant == MDVariant.per_table:
            rule = alpha_power_rule(np.array([1.0 / info.num_embeddings]), spec.alpha, base, top=1.0 / n_min)
            d = round_dims(rule, base, spec.rounding)
            out.append(FeatureBlocks([0, info.num_embeddings], [int(d[0])]))
            continue
        bounds = block_boundaries(info.num_embeddings, spec.num_blocks)
        dims = round_dims(alpha_power_rule(block_popularity(info, bounds), spec.alpha, base), base, spec.rounding)
        out.append(FeatureBlocks(bounds, [int(d) for d in dims]))
    return out


def merge_equal_runs(fb: FeatureBlocks, dim: int, any_dim: bool) -> FeatureBlocks:
    """Adjacent blocks of equal dimension as one block: any equal dims when ``any_dim``
    (``merge_equal_blocks``), else only runs at the model dim or at 0.

    A run at the model dim (no projection) or at 0 (no table) merges exactly: an unprojected
    block is a plain table of ``dim``-wide rows with the feature's init bound and per-row
    optimizer state, so two adjacent ones are the same model as one table over both rank
    ranges. Merging projected blocks gives the union one projection instead of one each: the
    paper's rule over a coarser partition. Either way it is about speed: every block is a slot
    of B (mostly empty) bags in the fused lookup, B x d columns of its output and a projection.
    """
    bounds, dims = [fb.boundaries[0]], []
    for b, d in enumerate(fb.dims):
        if dims and d == dims[-1] and (any_dim or d in (0, dim)):
            bounds[-1] = fb.boundaries[b + 1]
        else:
            dims.append(d)
            bounds.append(fb.boundaries[b + 1])
    return FeatureBlocks(bounds, dims)


def compile_features(items: list[tuple[FeatureInfo, MDSpec]], dim: int, builder: PlanBuilder) -> None:
    for (info, spec), paper_blocks in zip(items, feature_blocks(items, dim)):
        fb = merge_equal_runs(paper_blocks, dim, spec.merge_equal_blocks)
        kept = [b for b, d in enumerate(fb.dims) if d]
        slots = [
            builder.slot(
                builder.table(
                    f"{info.name}_b{b}", fb.boundaries[b + 1] - fb.boundaries[b], fb.dims[b], init_rows=info.num_embeddings
                )
            )
            for b in kept
        ]
        shape = ", ".join(
            f"[{fb.boundaries[b]}, {fb.boundaries[b + 1]}) x {fb.dims[b]}" for b in range(len(fb.dims))
        )
        builder.feature(
            FeaturePlan(
                info.name,
                "md",
                slots,
                FrequencyBlocks(fb.boundaries, kept),
                ProjectedSum([fb.dims[b] for b in kept], dim),
                f"blocks {shape}",
            )
        )
