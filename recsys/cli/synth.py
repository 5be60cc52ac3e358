"""``recsys-synth``: synthetic Criteo-shaped data with a planted click model and its Bayes-optimal figures."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from recsys.cli.common import CONF_DIR, HYDRA_VERSION_BASE
from recsys.core.logging import quiet_libraries
from recsys.data.config import SynthConfig

ConfigStore.instance().store(name="synth_schema", node=SynthConfig)


@hydra.main(config_path=CONF_DIR, config_name="synth", version_base=HYDRA_VERSION_BASE)
def _app(cfg: DictConfig) -> None:
    quiet_libraries()
    from recsys.data.synth import generate

    job: SynthConfig = OmegaConf.to_object(cfg)
    summary = generate(job)
    print(f"wrote {job.rows:,} synthetic rows to {job.output}; Bayes-optimal figures: {job.output}/bayes.json")
    test = summary.get("test")
    if test:
        print(f"test split: Bayes-optimal AUC {test['bayes_auc']:.5f}, logloss {test['bayes_logloss']:.5f}")


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
