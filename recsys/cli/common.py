"""What every Hydra entry point shares: the config directory, the run directory, and
:func:`hydra_entry_point`, which turns a plain ``run(job)`` function into a console script."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recsys.allocator import ensure_tcmalloc
from recsys.core.logging import quiet_libraries

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
HYDRA_VERSION_BASE = "1.3"


def run_dir() -> Path:
    """The directory Hydra made for this run (or this multirun job)."""
    return Path(HydraConfig.get().runtime.output_dir)


def hydra_entry_point(
    config_name: str,
    run: Callable[[Any], Any],
    *,
    schema: type | None = None,
    to_job: Callable[[DictConfig], Any] = OmegaConf.to_object,
    tcmalloc: bool = False,
) -> Callable[[], None]:
    """The ``main()`` of a console script: compose ``conf/<config_name>.yaml``, quiet the
    libraries' logs, make the typed job (``to_job``: the schema's dataclass by default) and
    call ``run(job)``; what it returns is the job's return value in Hydra (the objective an
    optimizing sweeper reads).

    Args:
        config_name: the app's config file in ``conf/``.
        run: the plain function that does the work; Hydra names the job (its log file,
            ``<name>.log``) after the module that defines it, as if it were decorated itself.
        schema: the job's dataclass, stored in the ConfigStore as ``<config_name>_schema``
            (the config's first default), so composition checks every key and type.
        to_job: composed config -> the job ``run`` takes.
        tcmalloc: re-execute under tcmalloc first (``recsys.allocator``): the apps that
            train or score with FBGEMM tables.
    """
    if schema is not None:
        ConfigStore.instance().store(name=f"{config_name}_schema", node=schema)

    @hydra.main(config_path=CONF_DIR, config_name=config_name, version_base=HYDRA_VERSION_BASE)
    @functools.wraps(run)
    def app(cfg: DictConfig) -> Any:
        quiet_libraries()
        return run(to_job(cfg))

    def main() -> None:
        if tcmalloc:
            ensure_tcmalloc()
        app()

    return main
