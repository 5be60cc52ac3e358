"""The TorchScript artifact served from C++: ``recsys_serve`` (libtorch from the torch wheel +
fbgemm_gpu's operator libraries) prints the probabilities Python computes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.serving.artifact import fbgemm_operator_libraries, load_model
from recsys.serving.config import ExportConfig
from recsys.serving.export import export_artifact
from tests.conftest import REPO
from tests.serving.conftest import raw_rows, raw_tensors

SOURCE = REPO / "recsys" / "serving" / "cpp"
# scripts/setup.sh builds it here; the test builds it there itself when it is missing or stale
PREBUILT = REPO / ".venv" / "recsys_serve_build"


def serve_binary(tmp_path: Path) -> Path:
    binary = PREBUILT / "recsys_serve"
    newest_source = max(p.stat().st_mtime for p in SOURCE.iterdir())
    if binary.exists() and binary.stat().st_mtime >= newest_source:
        return binary
    if shutil.which("cmake") is None or (shutil.which("c++") or shutil.which("g++")) is None:
        pytest.skip("no cmake or C++ compiler on this machine: recsys_serve cannot be built")
    build = tmp_path / "build"
    prefix = torch.utils.cmake_prefix_path
    for args in (["cmake", "-S", str(SOURCE), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"],
                 ["cmake", "--build", str(build)]):
        proc = subprocess.run(args, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return build / "recsys_serve"


@pytest.mark.slow
def test_cpp_program_scores_as_python(checkpoint_for, tmp_path):
    binary = serve_binary(tmp_path)
    artifact = tmp_path / "artifact"
    export_artifact(ExportConfig(checkpoint=str(checkpoint_for("md")), output=str(artifact), quantize="int8", export=False))
    dense, sparse = raw_tensors(raw_rows())
    dense, sparse = dense[:64], sparse[:64]
    rows = tmp_path / "rows.txt"
    body = np.concatenate([dense.numpy(), sparse.numpy()], axis=1)
    rows.write_text(f"{len(body)} {dense.shape[1]} {sparse.shape[1]}\n" + "\n".join(" ".join(map(str, r)) for r in body) + "\n")
    libraries = [str(p) for p in fbgemm_operator_libraries()]
    proc = subprocess.run([str(binary), str(artifact / "model.ts"), str(rows), *libraries],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.tensor([float(x) for x in proc.stdout.split()])
    expected = load_model(artifact)(dense, sparse)
    assert got.shape == expected.shape and (got - expected).abs().max().item() <= 1e-6

    rows.write_text("2 13 26\n1 2 3\n")  # a short row: an error naming the line, not a score
    proc = subprocess.run([str(binary), str(artifact / "model.ts"), str(rows), *libraries], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "rows.txt:2: expected 39 integers" in proc.stderr
