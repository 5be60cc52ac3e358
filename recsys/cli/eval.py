"""``recsys-eval``: score a trained checkpoint on a split (Hydra app)."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from recsys.allocator import ensure_tcmalloc
from recsys.cli.common import CONF_DIR, HYDRA_VERSION_BASE, run_dir
from recsys.core.logging import quiet_libraries
from recsys.evaluation.config import EvalJobConfig

ConfigStore.instance().store(name="eval_schema", node=EvalJobConfig)


@hydra.main(config_path=CONF_DIR, config_name="eval", version_base=HYDRA_VERSION_BASE)
def _app(cfg: DictConfig) -> float:
    from recsys.evaluation.offline import evaluate_checkpoint

    quiet_libraries()
    result = evaluate_checkpoint(OmegaConf.to_object(cfg), run_dir())
    if "html" in result:
        print(f"HTML report at {result['html']}")
    print(f"report: {result['markdown']}")
    return result["metrics"]["auc"]


def main() -> None:
    ensure_tcmalloc()
    _app()


if __name__ == "__main__":
    main()
