"""What every Hydra entry point shares: the config directory and the run directory."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
HYDRA_VERSION_BASE = "1.3"


def run_dir() -> Path:
    """The directory Hydra made for this run (or this multirun job)."""
    return Path(HydraConfig.get().runtime.output_dir)
