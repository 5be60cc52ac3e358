"""recsys's own operators (the ``kernels/`` package, ``recsys_kernels``), when installed.

They are optional: without the package or its C++ build, the embeddings run their pure-torch
paths, and :func:`kernels_unavailable` says why.
"""

from __future__ import annotations

try:
    import recsys_kernels
except ImportError as err:  # the kernels/ package is not installed: the torch paths run instead
    recsys_kernels = None
    _IMPORT_ERROR = f"the recsys_kernels package is not installed ({err}; run scripts/setup.sh)"
else:
    _IMPORT_ERROR = ""

__all__ = ["recsys_kernels", "kernels_unavailable"]


def kernels_unavailable() -> str:
    """Why recsys's C++ ops cannot run here ('' when they can)."""
    if recsys_kernels is None:
        return _IMPORT_ERROR
    return recsys_kernels.unavailable_reason()
