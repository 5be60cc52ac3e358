"""Compile a parsed embedding config to a plan, and solve its budget.

:mod:`recsys.embeddings.embedding_config` parses and checks the config (default method,
per-feature overrides, budget); here each method adds its features to one plan. With a budget,
the default method's size knob (hash/unified ``compression``, QR ``collisions``, MD ``alpha``)
is chosen so the plan's exact bytes (table weights + fused optimizer state + combiner weights)
are the largest that fit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Optional

import numpy as np

from recsys.embeddings import full, hashing_trick, md, optembed, qr, unified
from recsys.embeddings.embedding_config import BUDGET_KNOBS, EmbeddingSetup
from recsys.embeddings.plan import EmbeddingPlan, FeatureInfo, PlanBuilder
from recsys.embeddings.specs import FullSpec, TableOptimizer

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Method:
    """The function that adds a method's features to a plan, and the values its budget knob
    (:data:`~recsys.embeddings.embedding_config.BUDGET_KNOBS`) may take: bytes fall as it grows."""

    compile_features: Callable[[list, int, PlanBuilder], None]
    knob_values: Optional[Callable[[], np.ndarray]] = None


def _geometric(lo: float, hi: float, per_octave: int, integer: bool = False) -> Callable[[], np.ndarray]:
    def values() -> np.ndarray:
        v = np.exp2(np.arange(np.log2(lo) * per_octave, np.log2(hi) * per_octave + 1) / per_octave)
        return np.unique(np.round(v).astype(np.int64)) if integer else v

    return values


METHODS: dict[str, Method] = {
    "full": Method(full.compile_features),
    "hash": Method(hashing_trick.compile_features, _geometric(1, 1e6, 16)),
    "qr": Method(qr.compile_features, _geometric(2, 2**24, 16, integer=True)),
    # alpha beyond the paper's [0, 1] makes dims fall faster than popularity: small budgets
    "md": Method(md.compile_features, lambda: np.round(np.arange(0, 8.0001, 0.01), 4)),
    "unified": Method(unified.compile_features, _geometric(0.25, 1e6, 16)),
    "optembed": Method(optembed.compile_features),
}


def _grouped(setup: EmbeddingSetup, features: list[FeatureInfo]) -> dict[str, list]:
    unknown = set(setup.overrides) - {f.name for f in features}
    if unknown:
        raise KeyError(f"embedding.overrides names unknown features {sorted(unknown)}")
    groups: dict[str, list] = {}
    for info in features:
        spec = setup.spec_for(info.name)
        groups.setdefault(spec.method, []).append((info, spec))
    return groups


def _compile(setup: EmbeddingSetup, features: list[FeatureInfo], dim: int) -> EmbeddingPlan:
    builder = PlanBuilder(dim)
    for method, items in _grouped(setup, features).items():
        METHODS[method].compile_features(items, dim, builder)
    plan = builder.build([f.name for f in features])
    plan.default_spec = setup.default
    return plan


def plan_bytes(setup: EmbeddingSetup, features: list[FeatureInfo], dim: int, optimizer: TableOptimizer) -> int:
    """Exact bytes of the plan (tables, their optimizer state, combiner weights).

    Computed by compiling the plan (building no tables): the plan builder is the one place
    that knows a method's tables, so sizes and the built model can never disagree.
    """
    return _compile(setup, features, dim).memory(optimizer).total_bytes


def full_bytes(features: list[FeatureInfo], dim: int, optimizer: TableOptimizer) -> int:
    return plan_bytes(EmbeddingSetup(FullSpec()), features, dim, optimizer)


def solve_budget(setup: EmbeddingSetup, features: list[FeatureInfo], dim: int, optimizer: TableOptimizer) -> EmbeddingSetup:
    """Set the default method's size knob so the plan is the largest that fits the budget."""
    if setup.budget is None and setup.budget_bytes is None:
        return setup
    target = setup.budget_bytes if setup.budget_bytes is not None else setup.budget * full_bytes(features, dim, optimizer)
    field = BUDGET_KNOBS[setup.default.method]  # parsing rejected a budget on a method without one
    best, best_bytes, smallest = None, -1, None
    for value in METHODS[setup.default.method].knob_values():
        # overrides keep their own sizes: the budget tunes the default method only
        trial = dataclasses.replace(setup, default=dataclasses.replace(setup.default, **{field: value.item()}))
        size = plan_bytes(trial, features, dim, optimizer)
        smallest = size if smallest is None else min(smallest, size)
        if best_bytes < size <= target:
            best, best_bytes = trial, size
    if best is None:
        raise ValueError(
            f"embedding budget {target:,.0f} bytes is below the smallest {setup.default.method} plan "
            f"({smallest:,} bytes with {field} at its limit)"
        )
    log.info(
        "embedding budget %s bytes: %s.%s=%s gives %s bytes",
        f"{target:,.0f}", setup.default.method, field, getattr(best.default, field), f"{best_bytes:,}",
    )
    return best


def compile_plan(setup: EmbeddingSetup, features: list[FeatureInfo], dim: int, optimizer: TableOptimizer) -> EmbeddingPlan:
    """The plan for ``features``: budget solved, every method compiled, logical order kept."""
    return _compile(solve_budget(setup, features, dim, optimizer), features, dim)
