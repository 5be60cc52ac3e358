"""Logs are for people: library chatter stays at WARNING unless asked for.

FBGEMM logs every table-batched lookup's full argument list at INFO, on the root logger
(``logging.info``), so a named-logger level cannot silence it: :func:`quiet_libraries` sets the
libraries' own loggers to a level AND filters the root logger's records that come from their
source files. Every entry point calls it once logging is configured. To see the chatter, set
``RECSYS_LIBRARY_LOG_LEVEL=INFO`` (or ``DEBUG``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings

LIBRARIES = ("fbgemm_gpu", "torchrec")
LEVEL_ENV = "RECSYS_LIBRARY_LOG_LEVEL"
LIBRARY_WARNINGS = r"(torch\.distributed|torchrec|fbgemm_gpu)(\.|$)"  # modules whose FutureWarnings are the libraries' notices


def _package_dirs(names: tuple[str, ...]) -> tuple[str, ...]:
    """Source directories of the installed packages (found without importing them)."""
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(os.path.join(d, "") for d in spec.submodule_search_locations)
    return tuple(dirs)


class LibraryFilter(logging.Filter):
    """Drops records below ``level`` that come from a library (by logger name or source file)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.dirs = _package_dirs(LIBRARIES)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        return record.name.split(".")[0] not in LIBRARIES and not record.pathname.startswith(self.dirs)


def library_level(level: str | None = None) -> int:
    """The numeric level of ``level``, else of ``$RECSYS_LIBRARY_LOG_LEVEL``, else WARNING."""
    name = (level or os.environ.get(LEVEL_ENV) or "WARNING").upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        raise ValueError(f"{LEVEL_ENV}={name!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
    return numeric


def quiet_libraries(level: str | None = None) -> None:
    """Keep FBGEMM's and torchrec's records below ``level`` (default WARNING) out of the logs.

    At WARNING and above, the deprecation notices that torch and the libraries raise about the
    libraries' own calls are left out too (a sharded run printed a dozen per rank: torchrec's DDP
    arguments, its collectives' names, ShardedTensor in checkpoints; torch.fx's note on
    ``is_fx_tracing``): nothing in them is the user's to change.
    """
    numeric = library_level(level)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(numeric)
    root = logging.getLogger()
    for old in [f for f in root.filters if isinstance(f, LibraryFilter)]:
        root.removeFilter(old)
    root.addFilter(LibraryFilter(numeric))
    quiet = numeric >= logging.WARNING  # (a later call below WARNING shows them again: its filter goes first)
    warnings.filterwarnings("ignore" if quiet else "default", category=FutureWarning, module=LIBRARY_WARNINGS)
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR if quiet else logging.NOTSET)
