"""Configs that never fail silently: unknown keys, impossible combinations and settings that
would change nothing are errors naming the key; per-feature settings are applied, never dropped."""

import numpy as np
import pytest

from recsys.embeddings.compiler import compile_plan
from recsys.embeddings.embedding_config import parse_embedding_config
from recsys.embeddings.md import round_dims
from recsys.embeddings.plan import FeatureInfo
from recsys.embeddings.specs import TableOptimizer

SIZES = {"C1": 1000, "C2": 37, "C3": 5000, "C4": 3}
FEATURES = [FeatureInfo(name, n) for name, n in SIZES.items()]
DIM = 16


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"method": "hash", "rows": 64, "compression": 8}, r"embedding.compression=8.* no effect: rows is set"),
        ({"method": "unified", "rows": 64, "compression": 2}, r"embedding.compression=2.* no effect: rows is set"),
        ({"method": "hash", "hash": "modulo", "seed": 3}, r"embedding.seed=3 has no effect: hash=modulo"),
        ({"method": "md", "variant": "per_table", "num_blocks": 4}, r"embedding.num_blocks=4 has no effect: variant=per_table"),
        ({"method": "md", "variant": "per_table", "merge_equal_blocks": False}, r"embedding.merge_equal_blocks=False has no effect: variant=per_table"),
        ({"method": "optembed", "artifacts": "/x"}, r"embedding.artifacts=/x has no effect: stage=all"),
        ({"method": "optembed", "stage": "retrain", "artifacts": "/x", "supernet_epochs": 2}, r"embedding.supernet_epochs=2 has no effect"),
        ({"method": "optembed", "stage": "supernet", "retrain_epochs": 2}, r"embedding.retrain_epochs=2 has no effect"),
        ({"method": "full", "threshold": 10}, r"embedding \(method=full\): Key 'threshold' not in 'FullSpec'"),
        ({"method": "full", "budget": 0.5}, r"embedding.budget needs a method with a size knob .* method=full"),
        ({"method": "optembed", "budget_bytes": 10**6}, r"embedding.budget_bytes needs a method with a size knob .* method=optembed"),
        ({"method": "qr", "collisions": 64, "budget": 0.5}, r"embedding.collisions=64 and embedding.budget are both set"),
        ({"method": "hash", "rows": 64, "budget": 0.5}, r"embedding.rows and embedding.budget are both set"),
        ({"method": "hash", "budget": 0.5, "budget_bytes": 1000}, r"embedding.budget and embedding.budget_bytes are both set"),
        ({"method": "hash", "budget_bytes": 0}, r"embedding.budget_bytes must be positive"),
        ({"method": "qr", "overrides": {"C3": {}}}, r"embedding.overrides.C3=\{\} changes nothing"),
        ({"method": "qr", "overrides": {"C3": {"method": "qr", "collisions": 4}}}, r"embedding.overrides.C3=.* changes nothing"),
        ({"method": "md", "overrides": {"C3": {"method": "hash", "rows": 8, "compression": 2}}}, r"embedding.overrides.C3.compression=2.* no effect"),
        ({"method": "md", "overrides": {"C3": {"alpha": -1}}}, r"embedding.overrides.C3.alpha must be >= 0"),
        ({"method": "md", "rounding": 1.0}, r"embedding.rounding must be in \[0, 1\)"),
        ({"method": "md", "rounding": 0.3, "budget": 0.25}, r"embedding.rounding=0.3 and embedding.budget are both set: the budget sets alpha and rounding"),
    ],
)
def test_pointless_unknown_or_impossible_settings_name_the_key(config, message):
    with pytest.raises(ValueError, match=message):
        parse_embedding_config(config)


def test_settings_that_take_effect_are_accepted():
    parse_embedding_config({"method": "hash", "rows": 64})  # rows alone: compression stays at its default
    parse_embedding_config({"method": "hash", "hash": "modulo", "compression": 8})
    parse_embedding_config({"method": "qr", "budget": 0.5, "overrides": {"C3": {"collisions": 64}}})
    parse_embedding_config({"method": "optembed", "stage": "retrain", "artifacts": "/x", "retrain_epochs": 2})


def md_dims(config: dict) -> dict[str, int]:
    plan = compile_plan(parse_embedding_config(config), FEATURES, DIM, TableOptimizer.rowwise_adagrad)
    return {name: next((t.dim for t in plan.tables if t.name == f"{name}_b0"), 0) for name in SIZES}


def test_md_per_table_applies_each_features_own_alpha_and_base_dim():
    uniform = md_dims({"method": "md", "alpha": 0.25, "variant": "per_table"})
    # d_t = 16 (n_min / n_t)^0.25, n_min = 3 (C4), rounded to multiples of 4
    assert uniform == {name: int(round_dims(np.array([16 * (3 / n) ** 0.25]), 16)[0]) for name, n in SIZES.items()}
    assert uniform == {"C1": 4, "C2": 8, "C3": 4, "C4": 16}
    mixed = md_dims({
        "method": "md", "alpha": 0.25, "variant": "per_table",
        "overrides": {"C3": {"alpha": 0.0}, "C2": {"base_dim": 8}},
    })
    # C3's alpha 0 keeps it at the base dim; C2's base_dim 8 halves its rule; the rest unchanged
    assert mixed == {"C1": 4, "C2": 4, "C3": 16, "C4": 16}
