"""``recsys-export``: a trained checkpoint → a serving artifact (TorchScript + torch.export)."""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from recsys.cli.common import CONF_DIR, HYDRA_VERSION_BASE
from recsys.core.logging import quiet_libraries
from recsys.serving.config import ExportConfig

ConfigStore.instance().store(name="export_schema", node=ExportConfig)


@hydra.main(config_path=CONF_DIR, config_name="export", version_base=HYDRA_VERSION_BASE)
def _app(cfg: DictConfig) -> None:
    from recsys.serving.export import export_artifact

    quiet_libraries()
    job: ExportConfig = OmegaConf.to_object(cfg)
    metadata = export_artifact(job)
    plan = metadata["plan"]
    print(
        f"wrote {job.output}: {', '.join(metadata['files'])}; {metadata['quantize']} tables "
        f"{plan['table_bytes']:,} bytes ({plan['table_bytes'] / plan['fp32_table_bytes']:.3f} of fp32)"
    )


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
