"""``recsys-predict``: score raw Criteo files through a serving artifact."""

from __future__ import annotations

import dataclasses
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from recsys.cli.common import CONF_DIR, HYDRA_VERSION_BASE, run_dir
from recsys.core.logging import quiet_libraries
from recsys.serving.config import PredictConfig

ConfigStore.instance().store(name="predict_schema", node=PredictConfig)


@hydra.main(config_path=CONF_DIR, config_name="predict", version_base=HYDRA_VERSION_BASE)
def _app(cfg: DictConfig) -> None:
    from recsys.core.io import write_json
    from recsys.data.ingest import BadRowError
    from recsys.serving.predict import predict_files

    quiet_libraries()
    job: PredictConfig = OmegaConf.to_object(cfg)
    try:
        result = predict_files(job)
    except BadRowError as exc:
        print(f"recsys-predict: {exc}", file=sys.stderr)
        sys.exit(2)
    write_json(run_dir() / "predict.json", dataclasses.asdict(result))
    print(f"scored {result.rows_scored:,} rows ({result.bad_rows:,} bad rows skipped) into {result.output} "
          f"at {result.rows_per_s:,.0f} rows/s; summary: {run_dir() / 'predict.json'}")
    for example in result.bad_row_examples:
        print(f"  bad row {example['file']}:{example['line']}: {example['reason']}"
              + (f" in column {example['feature']}" if "feature" in example else ""))
    if result.metrics:
        print(f"AUC {result.metrics['auc']:.5f} logloss {result.metrics['logloss']:.5f}")


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
