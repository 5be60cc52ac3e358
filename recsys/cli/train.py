"""``recsys-train``: train a DLRM and evaluate it (Hydra app; ``-m`` for sweeps)."""

from __future__ import annotations

import os
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from recsys.cli.common import hydra_entry_point, run_dir
from recsys.cli.schemas import register_train_schemas
from recsys.embeddings.embedding_config import parse_embedding_config
from recsys.train.config import TrainJobConfig

register_train_schemas()


def to_job_config(cfg: DictConfig) -> TrainJobConfig:
    """The typed job of a composed config; the embedding config is checked here (every key),
    before any work starts, and kept as plain data (as checkpoints record it)."""
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    job = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainJobConfig), plain))
    parse_embedding_config(job.embedding)
    return job


def trainer_for(job: TrainJobConfig) -> Callable:
    """OptEmbed's stage runner when any feature uses optembed (it refuses a model that mixes
    optembed with other methods, naming the keys), the training loop otherwise."""
    if "optembed" in parse_embedding_config(job.embedding).methods:
        from recsys.train.optembed import run_stages  # supernet -> search -> retrain -> compaction

        return run_stages
    from recsys.train.loop import train

    return train


def train_job(job: TrainJobConfig) -> float:
    train = trainer_for(job)
    if job.distributed.nproc > 1 and "RANK" not in os.environ:  # not under torchrun: start the ranks here
        from recsys.train.distributed import launch

        result = launch(train, job, run_dir())
    else:
        result = train(job, run_dir())
    print(f"report: {result.report}")
    return result.eval["auc"]


main = hydra_entry_point("train", train_job, to_job=to_job_config, tcmalloc=True)

if __name__ == "__main__":
    main()
