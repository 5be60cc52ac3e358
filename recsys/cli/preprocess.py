"""``recsys-preprocess``: raw CTR files (Criteo, Avazu or any schema; plain or .gz) → Parquet shards + vocabularies."""

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
    from recsys.data.ingest import preprocess

    job: PreprocessConfig = OmegaConf.to_object(cfg)
    try:
        stats = preprocess(job)
    except (ValueError, OSError) as exc:  # bad rows (fail mode), no good row, bad schema or config, missing files
        print(f"recsys-preprocess: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        f"wrote {stats.rows_out:,} rows ({stats.bad_rows:,} bad rows skipped) to {job.output} "
        f"at {stats.rows_per_s:,.0f} rows/s; stats: {job.output}/stats.json"
    )


def schema_file_overrides(argv: list[str]) -> list[str]:
    """``schema=<path.yaml>`` -> ``schema_file=<path.yaml>``: Hydra groups take preset names
    only, so a schema file is passed on as a file and read by the ingest."""
    return [f"schema_file={arg.split('=', 1)[1]}" if arg.startswith("schema=") and arg.endswith((".yaml", ".yml"))
            else arg for arg in argv]


def main() -> None:
    sys.argv[1:] = schema_file_overrides(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
