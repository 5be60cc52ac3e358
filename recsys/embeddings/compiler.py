"""Compile an embedding config to a plan: a default method, per-feature overrides, a budget.

``cfg.embedding`` (a Hydra node, a dict or a spec dataclass) looks like::

    method: qr            # the default method and its options (see each method's Spec)
    collisions: 4
    operation: mult
    overrides:            # optional: per-feature method or options
      C6: {method: full}
      C3: {collisions: 64}
    budget: 0.0625        # optional: fraction of the full tables' bytes (or budget_bytes: ...)

An override without ``method`` (or with the default's) inherits the default's options; one with
another method starts from that method's defaults. With a budget, the default method's size
knob (hash/unified ``compression``, QR ``collisions``, MD ``alpha``) is chosen so the plan's
exact bytes (table weights + fused optimizer state + combiner weights) are the largest that fit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recsys.embeddings import full, hashing_trick, md, optembed, qr, unified
from recsys.embeddings.plan import EmbeddingPlan, FeatureInfo, PlanBuilder
from recsys.embeddings.specs import FullSpec, HashSpec, MDSpec, OptEmbedSpec, QRSpec, TableOptimizer, UnifiedSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Knob:
    """The spec field a budget tunes, and the values it may take (bytes fall as it grows)."""

    field: str
    candidates: Callable[[], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Method:
    """A method's spec type, the function that adds its features to a plan, its budget knob."""

    spec: type
    compile_features: Callable[[list, int, PlanBuilder], None]
    knob: Optional[Knob] = None


def _geometric(lo: float, hi: float, per_octave: int, integer: bool = False) -> Callable[[], np.ndarray]:
    def values() -> np.ndarray:
        v = np.exp2(np.arange(np.log2(lo) * per_octave, np.log2(hi) * per_octave + 1) / per_octave)
        return np.unique(np.round(v).astype(np.int64)) if integer else v

    return values


METHODS: dict[str, Method] = {
    "full": Method(FullSpec, full.compile_features),
    "hash": Method(HashSpec, hashing_trick.compile_features, Knob("compression", _geometric(1, 1e6, 16))),
    "qr": Method(QRSpec, qr.compile_features, Knob("collisions", _geometric(2, 2**24, 16, integer=True))),
    "md": Method(MDSpec, md.compile_features, Knob("alpha", lambda: np.round(np.arange(0, 8.0001, 0.01), 4))),
    "unified": Method(UnifiedSpec, unified.compile_features, Knob("compression", _geometric(0.25, 1e6, 16))),
    "optembed": Method(OptEmbedSpec, optembed.compile_features),
}


@dataclasses.dataclass
class EmbeddingSetup:
    """The parsed embedding config: default spec, per-feature specs, budget."""

    default: Any
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    budget: Optional[float] = None
    budget_bytes: Optional[int] = None

    def spec_for(self, feature: str) -> Any:
        return self.overrides.get(feature, self.default)

    @property
    def methods(self) -> set[str]:
        return {self.default.method, *(s.method for s in self.overrides.values())}


def _as_dict(node: Any) -> dict:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    if isinstance(node, dict):
        return dict(node)
    raise TypeError(f"embedding config must be a mapping, got {type(node).__name__}")


def parse_spec(node: dict, where: str = "embedding") -> Any:
    """A method spec dataclass from a mapping with ``method`` and that method's options."""
    method = node.get("method")
    if method not in METHODS:
        raise ValueError(f"{where}.method={method!r} is not one of {sorted(METHODS)}")
    spec_cls = METHODS[method].spec
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(spec_cls), node))
    except OmegaConfBaseException as exc:
        raise ValueError(f"{where} (method={method}): {exc}".splitlines()[0]) from None


def parse_embedding_config(node: Any) -> EmbeddingSetup:
    if isinstance(node, EmbeddingSetup):
        return node
    raw = _as_dict(node)
    overrides = raw.pop("overrides", None) or {}
    budget = raw.pop("budget", None)
    budget_bytes = raw.pop("budget_bytes", None)
    default = parse_spec(raw)
    parsed = {}
    for feature, override in overrides.items():
        override = dict(override or {})
        method = override.get("method", default.method)
        base = dataclasses.asdict(default) if method == default.method else {"method": method}
        parsed[feature] = parse_spec({**base, **override}, where=f"embedding.overrides.{feature}")
    if budget is not None and not 0 < budget:
        raise ValueError(f"embedding.budget must be a positive fraction of the full tables' bytes, got {budget}")
    return EmbeddingSetup(default, parsed, budget, budget_bytes)


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
    method = METHODS[setup.default.method]
    if method.knob is None:
        current = plan_bytes(setup, features, dim, optimizer)
        if current > target:
            raise ValueError(f"embedding budget {target:,.0f} bytes is below the {setup.default.method} plan's {current:,} bytes")
        return setup
    best, best_bytes, smallest = None, -1, None
    for value in method.knob.candidates():
        # overrides keep their own sizes: the budget tunes the default method only
        trial = dataclasses.replace(setup, default=dataclasses.replace(setup.default, **{method.knob.field: value.item()}))
        size = plan_bytes(trial, features, dim, optimizer)
        smallest = size if smallest is None else min(smallest, size)
        if best_bytes < size <= target:
            best, best_bytes = trial, size
    if best is None:
        raise ValueError(
            f"embedding budget {target:,.0f} bytes is below the smallest {setup.default.method} plan "
            f"({smallest:,} bytes with {method.knob.field} at its limit)"
        )
    log.info(
        "embedding budget %s bytes: %s.%s=%s gives %s bytes",
        f"{target:,.0f}", setup.default.method, method.knob.field, getattr(best.default, method.knob.field), f"{best_bytes:,}",
    )
    return best


def compile_plan(setup: EmbeddingSetup, features: list[FeatureInfo], dim: int, optimizer: TableOptimizer) -> EmbeddingPlan:
    """The plan for ``features``: budget solved, every method compiled, logical order kept."""
    return _compile(solve_budget(setup, features, dim, optimizer), features, dim)
