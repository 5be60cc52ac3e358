"""Entry points parse configs before they pick an allocator and re-execute themselves, so the
CLI modules and every config module must import without torch, FBGEMM or torchrec."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "recsys.cli.train",
    "recsys.cli.eval",
    "recsys.cli.preprocess",
    "recsys.cli.synth",
    "recsys.cli.schemas",
    "recsys.core.logging",
    "recsys.cli.export",
    "recsys.cli.predict",
    "recsys.data.config",
    "recsys.embeddings.specs",
    "recsys.embeddings.embedding_config",
    "recsys.models.config",
    "recsys.train.config",
    "recsys.evaluation.config",
    "recsys.serving.config",
]
HEAVY = ("torch", "fbgemm_gpu", "torchrec")


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_imports_without_torch(module):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"
