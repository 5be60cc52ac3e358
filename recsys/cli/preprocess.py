"""``recsys-preprocess``: raw Criteo TSV/CSV (plain or .gz) → Parquet shards + vocabularies."""

from __future__ import annotations

import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from recsys.cli.common import CONF_DIR, HYDRA_VERSION_BASE
from recsys.core.logging import quiet_libraries
from recsys.data.config import PreprocessConfig

ConfigStore.instance().store(name="preprocess_schema", node=PreprocessConfig)


@hydra.main(config_path=CONF_DIR, config_name="preprocess", version_base=HYDRA_VERSION_BASE)
def _app(cfg: DictConfig) -> None:
    quiet_libraries()
    from recsys.data.ingest import BadRowError, preprocess

    job: PreprocessConfig = OmegaConf.to_object(cfg)
    try:
        stats = preprocess(job)
    except BadRowError as exc:
        print(f"recsys-preprocess: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        f"wrote {stats.rows_out:,} rows ({stats.bad_rows:,} bad rows skipped) to {job.output} "
        f"at {stats.rows_per_s:,.0f} rows/s; stats: {job.output}/stats.json"
    )


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
