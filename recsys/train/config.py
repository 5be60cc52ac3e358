"""Typed configs of a training job (Hydra structured configs; ``conf/`` holds the presets)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Optional

from recsys.data.config import DataConfig
from recsys.embeddings.placement_config import PlacementConfig
from recsys.embeddings.specs import ShardingType, TableOptimizerConfig
from recsys.models.config import DLRMConfig, ModelRecipe


def job_config_dict(cfg: "TrainJobConfig") -> dict:
    """The job config as plain data (enums as strings), as checkpoints record it."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


class DenseOptimizer(str, enum.Enum):
    adagrad = "adagrad"
    sgd = "sgd"
    adam = "adam"


@dataclasses.dataclass
class LRScheduleConfig:
    """Learning-rate schedule of both optimizers (the fused table optimizer and the dense one).

    MLPerf's DLRM schedule (the reference's ``LRPolicyScheduler``): the rate climbs linearly
    from ``base / warmup_steps`` to ``base`` over ``warmup_steps``, stays there, and from
    ``decay_start`` (a fraction of the run's steps) falls polynomially,
    ``base * ((end - step) / (end - start)) ** decay_power``, to ``base * final_factor`` at the
    last step. ``warmup_steps=0`` and ``decay_start=1.0`` give a constant rate.
    """

    warmup_steps: int = 0
    decay_start: float = 1.0
    decay_power: float = 2.0
    final_factor: float = 0.0


@dataclasses.dataclass
class EarlyStoppingConfig:
    """Stop when ``patience`` validations in a row did not beat the best validation AUC by
    more than ``min_delta``; ``patience: null`` never stops early."""

    patience: Optional[int] = None
    min_delta: float = 0.0


@dataclasses.dataclass
class TrainerConfig:
    """The loop: epochs, optimizers, validation, checkpoints, logging.

    ``eval_every_steps``/``checkpoint_every_steps`` of 0 mean "at the end of each epoch only".
    ``resume_from`` is a checkpoint (a ``.pt`` file or a sharded run's ``.dcp`` directory, from
    any world size) or a run directory (its latest checkpoint).
    ``keep_best`` keeps the checkpoint of the best validation AUC as ``checkpoints/best.pt``
    (``checkpoints/best.dcp`` for a sharded run). ``checkpoint_at_end=false`` skips the
    checkpoint written when training ends (Lightning's ``save_last``): for throughput runs whose
    model nobody reads, a table-sized write less (2.3 GB at full Kaggle cardinalities).
    ``threads``: torch threads of each process; unset, torch's default in one process, and the
    machine's cores shared among its local ranks in a sharded run (torchrun sets none).
    """

    epochs: int = 1
    max_steps: Optional[int] = None
    table_optimizer: TableOptimizerConfig = dataclasses.field(default_factory=TableOptimizerConfig)
    dense_optimizer: DenseOptimizer = DenseOptimizer.adagrad
    dense_lr: float = 0.01
    lr_schedule: LRScheduleConfig = dataclasses.field(default_factory=LRScheduleConfig)
    eval_every_steps: int = 0
    val_batches: Optional[int] = 50
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    keep_best: bool = True
    checkpoint_at_end: bool = True
    early_stopping: EarlyStoppingConfig = dataclasses.field(default_factory=EarlyStoppingConfig)
    log_every_steps: int = 50
    seed: int = 0
    threads: Optional[int] = None
    resume_from: Optional[str] = None
    progress: bool = True
    tensorboard: bool = True


class EvalModel(str, enum.Enum):
    best = "best"  # the checkpoint of the best validation AUC (the last model when none was validated)
    last = "last"


@dataclasses.dataclass
class EvalConfig:
    """Final evaluation of the trained model: the best one by validation AUC, or the last.

    ``save_predictions`` keeps each scored row's label and score as ``predictions.parquet``
    beside the run's ``eval.json`` (split file order; a sharded run's ranks' rows put back in
    it), so ``recsys-report`` draws its curves and paired tests without scoring the run again.
    """

    split: str = "test"
    model: EvalModel = EvalModel.best
    max_batches: Optional[int] = None
    save_predictions: bool = True


@dataclasses.dataclass
class ShardingConfig:
    """How a multi-process run shards the physical tables (torchrec's planner chooses within these).

    ``types``: sharding types the planner may use; ``overrides``: a logical feature → the one
    type for all of its physical tables (``+sharding.overrides.C6=row_wise``); ``rank_memory``:
    bytes each rank may hold for tables and their optimizer state (``16GB``; default: the
    machine's RAM, or the GPU's memory, divided among the local ranks); ``min_partition``: the
    width of a column-wise shard (torchrec's ``ParameterConstraints.min_partition``; default
    torchrec's 128, so tables of dim 128 or less are not split by columns).
    """

    types: list[ShardingType] = dataclasses.field(default_factory=lambda: list(ShardingType))
    overrides: dict[str, ShardingType] = dataclasses.field(default_factory=dict)
    rank_memory: Optional[str] = None
    min_partition: Optional[int] = None


@dataclasses.dataclass
class DistributedConfig:
    """Processes of a run. ``nproc`` > 1 starts that many ranks on this machine (as torchrun does);
    under ``torchrun`` the world comes from torchrun. ``backend``: gloo (CPU) or nccl (CUDA) by
    default; ``timeout_s`` bounds every collective, so a rank that dies makes the others fail."""

    nproc: int = 1
    backend: Optional[str] = None
    timeout_s: int = 120


@dataclasses.dataclass
class TrainJobConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: DLRMConfig = dataclasses.field(default_factory=DLRMConfig)
    # method + its options, overrides, budget: typed per method when Hydra composes it
    # (recsys.cli.schemas), checked key by key by recsys.embeddings.embedding_config
    embedding: Any = dataclasses.field(default_factory=lambda: {"method": "full"})
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    sharding: ShardingConfig = dataclasses.field(default_factory=ShardingConfig)
    placement: PlacementConfig = dataclasses.field(default_factory=PlacementConfig)
    device: str = "cpu"

    def recipe(self) -> ModelRecipe:
        """What rebuilds this job's model (saved in every checkpoint)."""
        return ModelRecipe(
            model=self.model,
            embedding=self.embedding,
            table_optimizer=self.trainer.table_optimizer,
            data_path=self.data.path,
            seed=self.trainer.seed,
            placement=self.placement,
        )
