"""Run under tcmalloc when it is installed.

On CPU, FBGEMM's table-batched lookups allocate and free large blocks every step. glibc's
malloc hands blocks over 32 MB back to the OS on every free, so each step page-faults them
in again; with tcmalloc large lookups ran 2.5-4x faster on our 2-core machines. Where no
block crosses that size the gain is within the noise: the Kaggle DLRM at batch 2048 trained
0.97-1.09x as fast in three runs of benchmarks/bench_pipeline.py. The
allocator must be chosen before the process starts, so entry points call
:func:`ensure_tcmalloc`, which re-executes the current command with ``LD_PRELOAD`` set.
Set ``RECSYS_ALLOCATOR=glibc`` to opt out (the pipeline benchmark measures both).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)
_REEXEC_MARK = "RECSYS_ALLOCATOR_REEXEC"


def find_tcmalloc() -> str | None:
    """Path of an installed tcmalloc shared library, or None."""
    return next((p for p in TCMALLOC_CANDIDATES if Path(p).exists()), None)


def active_allocator() -> str:
    """``tcmalloc`` if it is mapped into this process, else ``glibc``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    return "tcmalloc" if "libtcmalloc" in maps else "glibc"


def ensure_tcmalloc() -> None:
    """Re-exec this process under tcmalloc if it is installed and not yet active.

    Does nothing when ``RECSYS_ALLOCATOR=glibc``, when tcmalloc is missing, or when it is
    already preloaded. Call it first thing in an entry point, before heavy imports.
    """
    if os.environ.get("RECSYS_ALLOCATOR", "tcmalloc") == "glibc":
        return
    if active_allocator() == "tcmalloc" or os.environ.get(_REEXEC_MARK):
        return
    lib = find_tcmalloc()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env[_REEXEC_MARK] = "1"
    # orig_argv keeps `-m module` and interpreter flags, so the re-exec is the same command.
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def describe_allocator() -> str:
    """One line for the startup log."""
    name = active_allocator()
    if name == "tcmalloc":
        return "allocator: tcmalloc (preloaded)"
    hint = (
        "RECSYS_ALLOCATOR=glibc was set"
        if os.environ.get("RECSYS_ALLOCATOR") == "glibc"
        else "install libtcmalloc-minimal4: large embedding lookups ran 2.5-4x faster with it; "
        "the Kaggle DLRM at batch 2048 0.86-1.24x over benchmark runs (benchmarks/results/pipeline.json)"
    )
    return f"allocator: glibc malloc ({hint})"
