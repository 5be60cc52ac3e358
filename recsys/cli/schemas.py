"""Every config group's schema in Hydra's ConfigStore, so composition is typed.

Each ``conf/<group>/<option>.yaml`` starts from its schema (``defaults: [<schema>, _self_]``)
and holds only what differs from the dataclass defaults; a misspelt key or a wrongly typed
value fails when Hydra composes the config, naming the key. ``embedding`` has one schema per
method (the method's spec plus overrides and budget), so ``embedding=qr embedding.colisions=4``
fails at composition although the job's ``embedding`` field can hold any method.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from recsys.data.config import DataConfig
from recsys.embeddings.embedding_config import SPECS, config_schema
from recsys.embeddings.placement_config import PlacementConfig
from recsys.models.config import DLRMConfig
from recsys.train.config import DistributedConfig, TrainerConfig, TrainJobConfig


def register_train_schemas() -> None:
    """The training app's schema and its groups' (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainJobConfig)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="model", name="dlrm_schema", node=DLRMConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="distributed", name="distributed_schema", node=DistributedConfig)
    store.store(group="placement", name="placement_schema", node=PlacementConfig)
    for method in SPECS:
        store.store(group="embedding", name=f"{method}_schema", node=config_schema(method))
