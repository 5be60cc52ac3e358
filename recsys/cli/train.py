"""``recsys-train``: train a DLRM and evaluate it (Hydra app; ``-m`` for sweeps)."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from recsys.allocator import ensure_tcmalloc
from recsys.cli.common import CONF_DIR, HYDRA_VERSION_BASE, run_dir
from recsys.train.config import TrainJobConfig

ConfigStore.instance().store(name="train_schema", node=TrainJobConfig)


def to_job_config(cfg: DictConfig) -> TrainJobConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainJobConfig), cfg))


@hydra.main(config_path=CONF_DIR, config_name="train", version_base=HYDRA_VERSION_BASE)
def _app(cfg: DictConfig) -> float:
    if OmegaConf.select(cfg, "embedding.method") == "optembed":
        from recsys.train.optembed import run_stages as train  # supernet -> search -> retrain -> compaction
    else:
        from recsys.train.loop import train

    result = train(to_job_config(cfg), run_dir())
    print(f"report: {result.report}")
    return result.eval["auc"]


def main() -> None:
    ensure_tcmalloc()
    _app()


if __name__ == "__main__":
    main()
