"""Typed configs of a training job (Hydra structured configs; ``conf/`` holds the presets)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Optional

from recsys.data.config import DataConfig
from recsys.embeddings.specs import TableOptimizerConfig
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
class TrainerConfig:
    """The loop: epochs, optimizers, validation, checkpoints, logging.

    ``eval_every_steps``/``checkpoint_every_steps`` of 0 mean "at the end of each epoch only".
    ``resume_from`` is a checkpoint file or a run directory (its latest checkpoint).
    """

    epochs: int = 1
    max_steps: Optional[int] = None
    table_optimizer: TableOptimizerConfig = dataclasses.field(default_factory=TableOptimizerConfig)
    dense_optimizer: DenseOptimizer = DenseOptimizer.adagrad
    dense_lr: float = 0.01
    eval_every_steps: int = 0
    val_batches: Optional[int] = 50
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    log_every_steps: int = 50
    seed: int = 0
    threads: Optional[int] = None
    resume_from: Optional[str] = None
    progress: bool = True
    tensorboard: bool = True


@dataclasses.dataclass
class EvalConfig:
    """Final evaluation of the trained model."""

    split: str = "test"
    max_batches: Optional[int] = None


@dataclasses.dataclass
class TrainJobConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: DLRMConfig = dataclasses.field(default_factory=DLRMConfig)
    # method + its options, overrides, budget: validated by recsys.embeddings.compiler, which
    # knows each method's typed spec (conf/embedding/<method>.yaml)
    embedding: Any = dataclasses.field(default_factory=lambda: {"method": "full"})
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    device: str = "cpu"

    def recipe(self) -> ModelRecipe:
        """What rebuilds this job's model (saved in every checkpoint)."""
        return ModelRecipe(
            model=self.model,
            embedding=self.embedding,
            table_optimizer=self.trainer.table_optimizer,
            data_path=self.data.path,
            seed=self.trainer.seed,
        )
