"""Parse and check an embedding config: a default method, per-feature overrides, a budget.

``cfg.embedding`` (a Hydra node, a dict or a dataclass) looks like::

    method: qr            # the default method and its options (see each method's spec)
    collisions: 4
    operation: mult
    overrides:            # optional: per-feature method or options
      C6: {method: full}
      C3: {collisions: 64}
    budget: 0.0625        # optional: fraction of the full tables' bytes (or budget_bytes: ...)

An override without ``method`` (or with the default's) inherits the default's options; one with
another method starts from that method's defaults. With a budget, the default method's size
knobs (:data:`BUDGET_KNOBS`) are solved by :mod:`recsys.embeddings.compiler`.

Configs never fail silently: an unknown key, an impossible combination or a setting that would
change nothing is a ``ValueError`` naming the key. The module is light (no torch), so entry
points check a config before they start the real work.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recsys.embeddings.specs import FullSpec, HashKind, HashSpec, MDSpec, MDVariant, OptEmbedNetwork, OptEmbedSpec, OptEmbedStage, QRSpec, UnifiedSpec

SPECS: dict[str, type] = {
    "full": FullSpec,
    "hash": HashSpec,
    "qr": QRSpec,
    "md": MDSpec,
    "unified": UnifiedSpec,
    "optembed": OptEmbedSpec,
}
# the spec fields a budget tunes, per method, the size knob first (methods without one take no budget)
BUDGET_KNOBS: dict[str, tuple[str, ...]] = {
    "hash": ("compression",),
    "qr": ("collisions",),
    "md": ("alpha", "rounding"),
    "unified": ("compression",),
}


@dataclasses.dataclass
class ModelWideOptions:
    """What an embedding config holds besides the default method's spec."""

    overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
    budget: Optional[float] = None
    budget_bytes: Optional[int] = None


@functools.cache
def config_schema(method: str) -> type:
    """The Hydra schema of ``conf/embedding/<method>.yaml``: the method's spec and the
    model-wide options, so a typo in a key fails when Hydra composes the config."""
    spec = SPECS[method]
    return dataclasses.dataclass(type(f"{spec.__name__}Config", (spec, ModelWideOptions), {"__module__": __name__}))


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
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    if isinstance(node, dict):
        return dict(node)
    raise TypeError(f"embedding config must be a mapping, got {type(node).__name__}")


def _changed(spec: Any, key: str) -> bool:
    """Whether ``spec.key`` differs from its method's default."""
    return getattr(spec, key) != getattr(type(spec)(), key)


def pointless_settings(spec: Any) -> list[tuple[str, str]]:
    """(key, why) for each option of ``spec`` that has no effect given its other options."""
    out: list[tuple[str, str]] = []
    if isinstance(spec, (HashSpec, UnifiedSpec)) and spec.rows is not None and _changed(spec, "compression"):
        out.append(("compression", "rows is set and fixes the table size"))
    if isinstance(spec, HashSpec) and spec.hash is HashKind.modulo and _changed(spec, "seed"):
        out.append(("seed", "hash=modulo takes no seed"))
    if isinstance(spec, MDSpec) and spec.variant is MDVariant.per_table and _changed(spec, "num_blocks"):
        out.append(("num_blocks", "variant=per_table has one block per table"))
    if isinstance(spec, MDSpec) and spec.variant is MDVariant.per_table and _changed(spec, "merge_equal_blocks"):
        out.append(("merge_equal_blocks", "variant=per_table has one block per table"))
    if isinstance(spec, OptEmbedSpec):
        later = spec.stage in (OptEmbedStage.search, OptEmbedStage.retrain)
        if spec.artifacts and not later and spec.network is OptEmbedNetwork.supernet:
            out.append(("artifacts", f"stage={spec.stage.value} makes its own; only stage=search or retrain reads them"))
        if later and _changed(spec, "supernet_epochs"):
            out.append(("supernet_epochs", f"stage={spec.stage.value} trains no supernet"))
        if spec.stage in (OptEmbedStage.supernet, OptEmbedStage.search) and _changed(spec, "retrain_epochs"):
            out.append(("retrain_epochs", f"stage={spec.stage.value} does not retrain"))
    return out


def parse_spec(node: dict, where: str = "embedding") -> Any:
    """A method spec dataclass from a mapping with ``method`` and that method's options."""
    method = node.get("method")
    if method not in SPECS:
        raise ValueError(f"{where}.method={method!r} is not one of {sorted(SPECS)}")
    try:
        spec = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SPECS[method]), node))
    except OmegaConfBaseException as exc:
        raise ValueError(f"{where} (method={method}): {exc}".splitlines()[0]) from None
    except ValueError as exc:  # a spec's own check (__post_init__) names the key as embedding.<key>
        raise ValueError(str(exc).replace("embedding.", f"{where}.", 1)) from None
    pointless = pointless_settings(spec)
    if pointless:
        key, why = pointless[0]
        raise ValueError(f"{where}.{key}={getattr(spec, key)} has no effect: {why}")
    return spec


def _check_budget(default: Any, budget: Optional[float], budget_bytes: Optional[int]) -> None:
    if budget is None and budget_bytes is None:
        return
    if budget is not None and budget_bytes is not None:
        raise ValueError("embedding.budget and embedding.budget_bytes are both set: give one")
    if budget is not None and not budget > 0:
        raise ValueError(f"embedding.budget must be a positive fraction of the full tables' bytes, got {budget}")
    if budget_bytes is not None and not budget_bytes > 0:
        raise ValueError(f"embedding.budget_bytes must be positive, got {budget_bytes}")
    key = "budget" if budget is not None else "budget_bytes"
    knobs = BUDGET_KNOBS.get(default.method)
    if knobs is None:
        raise ValueError(
            f"embedding.{key} needs a method with a size knob ({', '.join(sorted(BUDGET_KNOBS))}); "
            f"method={default.method} has none"
        )
    for knob in knobs:
        if _changed(default, knob):
            raise ValueError(
                f"embedding.{knob}={getattr(default, knob)} and embedding.{key} are both set: the budget sets {' and '.join(knobs)}"
            )
    if getattr(default, "rows", None) is not None:
        raise ValueError(f"embedding.rows and embedding.{key} are both set: rows fixes the size the budget would tune")


def parse_embedding_config(node: Any) -> EmbeddingSetup:
    """The setup of an embedding config; every bad, unknown or pointless key is a ValueError."""
    if isinstance(node, EmbeddingSetup):
        return node
    raw = _as_dict(node)
    overrides = raw.pop("overrides", None) or {}
    budget = raw.pop("budget", None)
    budget_bytes = raw.pop("budget_bytes", None)
    default = parse_spec(raw)
    _check_budget(default, budget, budget_bytes)
    parsed = {}
    for feature, override in overrides.items():
        where = f"embedding.overrides.{feature}"
        override = dict(override or {})
        method = override.get("method", default.method)
        base = dataclasses.asdict(default) if method == default.method else {"method": method}
        parsed[feature] = parse_spec({**base, **override}, where=where)
        if parsed[feature] == default:
            raise ValueError(f"{where}={override} changes nothing: the feature already uses {default.method} with these options")
    return EmbeddingSetup(default, parsed, budget, budget_bytes)
