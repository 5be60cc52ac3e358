"""Compile a parsed embedding config to a plan, and solve its budget.

:mod:`recsys.embeddings.embedding_config` parses and checks the config (default method,
per-feature overrides, budget); here each method adds its features to one plan. With a budget,
the default method's size knobs (hash/unified ``compression``, QR ``collisions``, MD ``alpha``
and ``rounding``) are chosen so the plan's exact bytes (table weights + fused optimizer state +
combiner weights) are the largest that fit.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable

import numpy as np

from recsys.embeddings import full, hashing_trick, md, optembed, qr, unified
from recsys.embeddings.embedding_config import BUDGET_KNOBS, EmbeddingSetup
from recsys.embeddings.plan import EmbeddingPlan, FeatureInfo, PlanBuilder
from recsys.embeddings.specs import FullSpec, TableOptimizer

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Method:
    """The function that adds a method's features to a plan, and the values each budget knob
    (:data:`~recsys.embeddings.embedding_config.BUDGET_KNOBS`, same order) may take.

    Bytes fall as the first (size) knob grows; ``monotone`` says they do not rise along it
    (whatever the other knobs), so the solve bisects it instead of trying every value. The
    values of the other knobs are tried in the order given: on equal bytes the first wins.
    """

    compile_features: Callable[[list, int, PlanBuilder], None]
    knob_values: tuple[Callable[[], np.ndarray], ...] = ()
    monotone: bool = False


def _geometric(lo: float, hi: float, per_octave: int, integer: bool = False) -> Callable[[], np.ndarray]:
    def values() -> np.ndarray:
        v = np.exp2(np.arange(np.log2(lo) * per_octave, np.log2(hi) * per_octave + 1) / per_octave)
        return np.unique(np.round(v).astype(np.int64)) if integer else v

    return values


def _md_alphas() -> np.ndarray:
    # alpha beyond the paper's [0, 1] makes dims fall faster than popularity: small budgets.
    # Steps of 1e-4: the big tables' tail blocks leave at alphas a few thousandths apart.
    return np.round(np.arange(0, 8.00001, 1e-4), 4)


def _md_roundings() -> np.ndarray:
    # nearest rounding (0.5) first, so it wins when another threshold gives no larger plan
    t = np.round(np.arange(0, 1, 0.1), 1)
    return t[np.argsort(np.abs(t - 0.5), kind="stable")]


METHODS: dict[str, Method] = {
    "full": Method(full.compile_features),
    "hash": Method(hashing_trick.compile_features, (_geometric(1, 1e6, 16),)),
    # not monotone: quotient tables shrink as remainder tables grow
    "qr": Method(qr.compile_features, (_geometric(2, 2**24, 16, integer=True),)),
    # A larger alpha never widens a block (popularity is at most the top block's). Bytes may
    # still rise by a projection (d x dim floats) when a block of fewer than ~3·dim rows leaves
    # the model dim: the bisection's plan is the largest that fits to within those few KB.
    "md": Method(md.compile_features, (_md_alphas, _md_roundings), monotone=True),
    "unified": Method(unified.compile_features, (_geometric(0.25, 1e6, 16),)),
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


def _largest_along(setup: EmbeddingSetup, field: str, values: np.ndarray, monotone: bool, size: Callable, target: float):
    """The largest plan along the knob ``field`` (``setup``'s other options fixed) within
    ``target`` bytes, as (setup, bytes), or (None, -1); and the smallest bytes seen."""

    def trial(i: int) -> EmbeddingSetup:
        return dataclasses.replace(setup, default=dataclasses.replace(setup.default, **{field: values[i].item()}))

    if not monotone:
        trials = [trial(i) for i in range(len(values))]
        sizes = [size(t) for t in trials]
        best = max((i for i, b in enumerate(sizes) if b <= target), key=lambda i: sizes[i], default=None)
        return (None, -1) if best is None else (trials[best], sizes[best]), min(sizes)
    smallest = size(trial(len(values) - 1))
    if smallest > target:
        return (None, -1), smallest
    if size(trial(0)) <= target:  # the largest plan on the line fits
        return (trial(0), size(trial(0))), smallest
    # bytes never rise along values: the first value that fits gives the largest plan that fits
    lo, hi = -1, len(values) - 1  # values[hi] fits; values[lo] does not (or lo = -1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if size(trial(mid)) <= target else (mid, hi)
    return (trial(hi), size(trial(hi))), smallest


def solve_budget(setup: EmbeddingSetup, features: list[FeatureInfo], dim: int, optimizer: TableOptimizer) -> EmbeddingSetup:
    """Set the default method's size knobs so the plan is the largest that fits the budget."""
    if setup.budget is None and setup.budget_bytes is None:
        return setup
    target = setup.budget_bytes if setup.budget_bytes is not None else setup.budget * full_bytes(features, dim, optimizer)
    method = METHODS[setup.default.method]
    fields = BUDGET_KNOBS[setup.default.method]  # parsing rejected a budget on a method without one
    sizes: dict[str, int] = {}

    def size(trial: EmbeddingSetup) -> int:
        key = repr(trial.default)
        if key not in sizes:
            sizes[key] = plan_bytes(trial, features, dim, optimizer)
        return sizes[key]

    best, best_bytes, smallest = None, -1, None
    size_values, *other_values = (values() for values in method.knob_values)
    for others in itertools.product(*other_values):
        # overrides keep their own sizes: the budget tunes the default method only
        line = dataclasses.replace(setup.default, **{f: v.item() for f, v in zip(fields[1:], others)})
        (trial, trial_bytes), low = _largest_along(
            dataclasses.replace(setup, default=line), fields[0], size_values, method.monotone, size, target
        )
        smallest = low if smallest is None else min(smallest, low)
        if best_bytes < trial_bytes:
            best, best_bytes = trial, trial_bytes
    if best is None:
        raise ValueError(
            f"embedding budget {target:,.0f} bytes is below the smallest {setup.default.method} plan "
            f"({smallest:,} bytes with {fields[0]} at its limit)"
        )
    log.info(
        "embedding budget %s bytes: %s gives %s bytes (%d plans compiled)",
        f"{target:,.0f}", " ".join(f"{setup.default.method}.{f}={getattr(best.default, f)}" for f in fields),
        f"{best_bytes:,}", len(sizes),
    )
    return best


def compile_plan(setup: EmbeddingSetup, features: list[FeatureInfo], dim: int, optimizer: TableOptimizer) -> EmbeddingPlan:
    """The plan for ``features``: budget solved, every method compiled, logical order kept."""
    return _compile(solve_budget(setup, features, dim, optimizer), features, dim)
